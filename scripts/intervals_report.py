"""Write docs/intervals.md from the per-run CSVs of `perfmodel calibrate uncertainty --runs-csv` (the last step of
scripts/intervals.sh; calibrate.report.coverage does the work, this script names the repository's hold-out folders).

    python scripts/intervals_report.py --out docs/intervals.md docs/intervals-runs-h200-sxm.csv ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibrate.report.coverage import markdown  # noqa: E402
from perfmodel.uncertainty.intervals import DEFAULT_LEVEL  # noqa: E402

HOLDOUT = ROOT / "data" / "h200-holdout"
# Sets whose predictions were committed with their intervals (calibrate predict) before the runs were measured
PREREGISTERED = (ROOT / "data" / "h200-holdout2", ROOT / "data" / "h200-holdout3")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csvs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--level", type=float, default=DEFAULT_LEVEL)
    parser.add_argument("--notes", type=Path, default=None, help="Markdown appended (kept across regenerations)")
    parser.add_argument("--holdout", type=Path, default=HOLDOUT, help="first pre-registered H200 set")
    parser.add_argument("--preregistered", type=Path, nargs="*", default=list(PREREGISTERED),
                        help="later pre-registered sets (predictions committed with their intervals)")
    args = parser.parse_args(argv)
    command = "python scripts/intervals_report.py --out " + str(args.out) + " " + " ".join(map(str, args.csvs))
    text = markdown(args.csvs, args.level, command, holdout_dir=args.holdout, preregistered_dirs=args.preregistered)
    if args.notes and args.notes.exists():
        text += "\n" + args.notes.read_text()
    from perfmodel.atomic import write_text_atomic

    write_text_atomic(args.out, text + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
