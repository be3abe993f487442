"""Write the expected output of every case in cases.yaml (run from the repository root)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import EXPECTED, load_cases, run_case  # noqa: E402


def main() -> int:
    EXPECTED.mkdir(exist_ok=True)
    for name, argv in load_cases().items():
        (EXPECTED / f"{name}.out").write_text(run_case(argv))
        print(f"wrote {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
