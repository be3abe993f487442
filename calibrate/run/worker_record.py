"""A worker's results records: how a run's outcome becomes a record (schema in calibrate/README.md) and is
appended. Shared by ``calibrate.run.worker`` (the process), its offline and online halves and the runner, so that
none of them imports another's entry point."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any, Mapping

from calibrate.records.store import SCHEMA_VERSION, append_record


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


def write_result(spec: Mapping[str, Any], record: Mapping[str, Any]) -> None:
    append_record(spec["results"], record)
    print(f"[calibrate.run.worker] {record['status']} run {record['run_id']}", file=sys.stderr, flush=True)


def record_error(spec: Mapping[str, Any], run: Mapping[str, Any], env: Mapping[str, Any],
                 engine_info: Mapping[str, Any] | None, exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    print(text, file=sys.stderr, flush=True)
    write_result(spec, make_record(spec=spec, run=run, status="error", metrics=None, engine_info=engine_info,
                                   env=env, error=error_tail(text)))
