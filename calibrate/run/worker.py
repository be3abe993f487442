"""One engine configuration in one process: `python -m calibrate.run.worker SPEC.json`.

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
from pathlib import Path

from calibrate.run import provenance


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
        print("usage: python -m calibrate.run.worker SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    if spec.get("watch_parent", True):
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    env = provenance.environment()
    env["command"] = spec.get("command") or provenance.command_line()
    env["log_file"] = spec.get("log_file")
    if spec["engine"]["mode"] == "offline":
        from calibrate.run.worker_offline import run_offline

        run_offline(spec, env)
    else:
        from calibrate.run.worker_online import run_online

        run_online(spec, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
