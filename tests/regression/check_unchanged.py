"""Check that regenerated expected outputs differ from a git revision's only by interval fields (issue 13).

    python tests/regression/check_unchanged.py [REV]      (default REV: main)

JSON: the keys ``interval`` (anywhere), and plan's ``point_status``, ``confidence``, ``point_estimate_gpus``
are removed from both sides before comparing; CSV: the ``<figure>_low`` / ``<figure>_high`` columns. Every
other value must be equal (exit 1 and the first difference otherwise).
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

EXPECTED = Path(__file__).resolve().parent / "expected"
NEW_KEYS = {"interval", "point_status", "confidence", "point_estimate_gpus"}


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in NEW_KEYS}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def normalised(text: str):
    try:
        return strip(json.loads(text))
    except json.JSONDecodeError:
        pass
    lines = text.splitlines()
    if lines and all(line.lstrip().startswith("{") for line in lines if line.strip()):  # JSON lines
        return [strip(json.loads(line)) for line in lines if line.strip()]
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{k: v for k, v in r.items() if not (k.endswith("_low") or k.endswith("_high"))} for r in rows]


def close(a, b, rel_tol: float = 1e-12) -> bool:
    """Equal, floats up to their last bits (see harness.FLOAT_RTOL); CSV cells are compared as numbers too."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel_tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rel_tol) for x, y in zip(a, b))
    if isinstance(a, str) and isinstance(b, str) and a != b:
        try:
            a, b = float(a), float(b)
        except ValueError:
            return False
    if isinstance(a, float) or isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=rel_tol)
    return a == b


def main(argv: list[str]) -> int:
    rev = argv[0] if argv else "main"
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                               check=True).stdout.strip())
    failures = 0
    for path in sorted(EXPECTED.glob("*.out")):
        rel = path.relative_to(root).as_posix()
        old = subprocess.run(["git", "show", f"{rev}:{rel}"], capture_output=True, text=True)
        if old.returncode:
            print(f"{path.name}: new (not in {rev})")
            continue
        if not close(normalised(old.stdout), normalised(path.read_text())):
            print(f"{path.name}: DIFFERS beyond interval fields")
            failures += 1
        else:
            print(f"{path.name}: unchanged apart from intervals")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
