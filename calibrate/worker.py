"""One engine configuration in one process: `python -m calibrate.worker SPEC.json`.

The runner writes the spec (engine config, resolved model folder, the runs to measure, the results file) and
sends this process's stdout/stderr to a log file. The worker appends one record per run to the results file as
each finishes. It dies with the runner: a watchdog thread ends the whole process group (vLLM's engine
processes included) when its parent goes away.

Tests without vLLM put a fake `vllm` package first on this process's PYTHONPATH (tests/calibrate/fake_vllm).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from calibrate import provenance
from calibrate.store import SCHEMA_VERSION, append_record


def make_record(*, spec: Mapping[str, Any], run: Mapping[str, Any], status: str, metrics: Mapping[str, Any] | None,
                engine_info: Mapping[str, Any] | None, env: Mapping[str, Any] | None, error: str | None = None,
                requests: Mapping[str, list] | None = None) -> dict[str, Any]:
    """A results record (schema in calibrate/README.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "source": "perfmodel-calibrate",
        "run_id": run["run_id"],
        "engine_id": spec["engine_id"],
        "sweep": run.get("sweep", ""),
        "group": run.get("group", ""),
        "status": status,
        "error": error,
        "config": {"engine": dict(spec["engine"]), "workload": dict(run["workload"])},
        "model": {"spec": spec["engine"]["model"], "path": spec["model_path"],
                  "config_hash": spec.get("model_config_hash"), "hardware": spec["engine"].get("hardware")},
        "metrics": dict(metrics) if metrics else None,
        "engine_info": dict(engine_info) if engine_info else None,
        "provenance": dict(env) if env else None,
        "requests": dict(requests) if requests else None,
    }


def error_tail(text: str, max_lines: int = 30, max_chars: int = 4000) -> str:
    return "\n".join(text.strip().splitlines()[-max_lines:])[-max_chars:]


def read_log(spec: Mapping[str, Any]) -> str:
    path = spec.get("log_file")
    if not path or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(int(spec.get("log_offset", 0)))
        return f.read().decode(errors="replace")


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.2)
        if os.getppid() != parent_pid:
            try:
                os.killpg(os.getpgid(0), signal.SIGKILL)
            finally:
                os._exit(137)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m calibrate.worker SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    if spec.get("watch_parent", True):
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    env = provenance.environment()
    env["command"] = spec.get("command") or provenance.command_line()
    env["log_file"] = spec.get("log_file")
    if spec["engine"]["mode"] == "offline":
        from calibrate.worker_offline import run_offline

        run_offline(spec, env)
    else:
        from calibrate.worker_online import run_online

        run_online(spec, env)
    return 0


def write_result(spec: Mapping[str, Any], record: Mapping[str, Any]) -> None:
    append_record(spec["results"], record)
    print(f"[calibrate.worker] {record['status']} run {record['run_id']}", file=sys.stderr, flush=True)


def record_error(spec: Mapping[str, Any], run: Mapping[str, Any], env: Mapping[str, Any],
                 engine_info: Mapping[str, Any] | None, exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    print(text, file=sys.stderr, flush=True)
    write_result(spec, make_record(spec=spec, run=run, status="error", metrics=None, engine_info=engine_info,
                                   env=env, error=error_tail(text)))


if __name__ == "__main__":
    sys.exit(main())
