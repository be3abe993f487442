"""End-to-end time of ``perfmodel predict --gpus 16`` (the default 70B on Taiwania 2 scenario), as a user sees it:
a fresh process each run, imports included.

    python benchmarks/bench_predict.py                 # 5 runs, median wall seconds
    python benchmarks/bench_predict.py --runs 9 -- --gpus 8 --model llama-3.1-8b --hardware hgx-h200

Target: about 1 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("predict_args", nargs="*", default=["--gpus", "16"],
                        help="arguments after 'perfmodel predict' (default: --gpus 16)")
    args = parser.parse_args(argv)
    times = wall_times_s(["predict", *args.predict_args], args.runs)
    print(f"perfmodel predict {' '.join(args.predict_args)}: median {statistics.median(times):.3f} s wall over "
          f"{args.runs} runs (min {min(times):.3f}, max {max(times):.3f})")
    return 0


def wall_times_s(cli_args: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh ``perfmodel CLI_ARGS`` processes, after one untimed warm-up run
    (byte-compiles and fills the page cache)."""
    command = [sys.executable, "-m", "perfmodel.cli", *cli_args]
    subprocess.run(command, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    raise SystemExit(main())
