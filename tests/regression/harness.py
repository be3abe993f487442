"""Run one regression case in-process and return what it printed (or wrote), normalised for time stamps."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
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


# A float literal (a decimal point or an exponent); integers, names and layout compare exactly.
_FLOAT = re.compile(r"(-?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+)")
# Floats agree to this relative difference: the last bits of a float depend on the CPU's SIMD width and the
# numpy build (an AMD EPYC with numpy 2.4 printed 9 of predict-h200-8b's 704 numbers one ulp away from the
# expected file written on another machine); a behaviour change moves far more than 1e-12.
FLOAT_RTOL = 1e-12


def first_difference(produced: str, expected: str) -> str | None:
    """None when the texts are equal up to FLOAT_RTOL in their float literals and runs of white space; else the
    first difference, in words."""
    a, b = _FLOAT.split(produced), _FLOAT.split(expected)
    if len(a) != len(b):
        return f"{(len(a) - 1) // 2} numbers against {(len(b) - 1) // 2} expected"
    for i, (x, y) in enumerate(zip(a, b)):
        if i % 2:  # a float literal
            fx, fy = float(x), float(y)
            if not (fx == fy or math.isclose(fx, fy, rel_tol=FLOAT_RTOL, abs_tol=0.0)):
                return f"number {i // 2}: {x} against {y} expected (context: ...{a[i - 1][-60:]})"
        elif " ".join(x.split()) != " ".join(y.split()):
            return f"text {x[:80]!r} against {y[:80]!r} expected"
    return None
