"""What the intervals cost ``perfmodel predict --gpus 16`` (issue 13 asks for at most 20% slower): fresh processes
in alternating pairs, the same profile with and without its ``uncertainty:`` section (both through
``--calibration``, so both take the same input checks), and the median of the pairs' time ratios.

    python benchmarks/bench_intervals.py                    # 15 pairs, the default Taiwania 2 scenario
    python benchmarks/bench_intervals.py --pairs 9 --profile perfmodel/profiles/h200-sxm.yaml -- --gpus 8 \\
        --model llama-3.1-8b --hardware hgx-h200
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def wall_s(command: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--profile", type=Path, default=ROOT / "perfmodel" / "profiles" / "v100-sxm2-32gb.yaml",
                        help="the profile of the scenario's GPU (default: Taiwania 2's V100)")
    parser.add_argument("predict_args", nargs="*", default=["--gpus", "16"])
    args = parser.parse_args(argv)
    profile = yaml.safe_load(args.profile.read_text())
    if not profile.get("uncertainty"):
        raise SystemExit(f"{args.profile} has no uncertainty section: nothing to compare")
    with tempfile.TemporaryDirectory() as tmp:
        with_path, without_path = Path(tmp) / "with.yaml", Path(tmp) / "without.yaml"
        with_path.write_text(args.profile.read_text())
        without_path.write_text(yaml.safe_dump({k: v for k, v in profile.items() if k != "uncertainty"},
                                               sort_keys=False))
        base = [sys.executable, "-m", "perfmodel.cli", "predict", *args.predict_args, "--calibration"]
        for path in (with_path, without_path):  # warm-up: byte-compiles, fills the page cache
            subprocess.run([*base, str(path)], check=True, capture_output=True, cwd=ROOT)
        on, off = [], []
        for _ in range(args.pairs):
            on.append(wall_s([*base, str(with_path)]))
            off.append(wall_s([*base, str(without_path)]))
    ratios = [a / b for a, b in zip(on, off)]
    print(f"perfmodel predict {' '.join(args.predict_args)}: intervals on {statistics.median(on):.3f} s, off "
          f"{statistics.median(off):.3f} s (medians of {args.pairs}); median pairwise ratio "
          f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
