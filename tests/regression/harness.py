"""Run one regression case in-process and return what it printed (or wrote), normalised for time stamps."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "expected"
VOLATILE_KEYS = ("predicted_utc",)  # wall-clock stamps: the only thing allowed to differ between runs


def load_cases() -> dict[str, list[str]]:
    return yaml.safe_load((HERE / "cases.yaml").read_text())


def run_case(argv: list[str]) -> str:
    from perfmodel.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "out.jsonl"
        args = [a.replace("{out}", str(out_file)) for a in argv]
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(args)
        if code != 0:
            raise AssertionError(f"perfmodel {' '.join(args)} exited {code}: {stderr.getvalue()}")
        text = out_file.read_text() if "{out}" in " ".join(argv) else stdout.getvalue()
    return _normalise(text)


def _normalise(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(record, dict) and any(k in record for k in VOLATILE_KEYS):
            record = {k: v for k, v in record.items() if k not in VOLATILE_KEYS}
            line = json.dumps(record, sort_keys=True) + "\n"
        lines.append(line)
    return "".join(lines)
