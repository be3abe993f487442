"""The README's worked example is what the code prints (scripts/readme_example.py makes it)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_worked_example_is_current():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from readme_example import example
    finally:
        sys.path.pop(0)
    text = example()
    assert text in (ROOT / "README.md").read_text(), (
        "README's worked example is stale: paste the output of `python scripts/readme_example.py`")
