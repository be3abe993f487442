"""``perfmodel predict`` on Taiwania 2 (V100 hybrid cube-mesh) against H200 (NVSwitch), and ``perfmodel --help``,
each a fresh process per run, imports included.

    python benchmarks/bench_predict_hardware.py            # 5 runs each, median wall seconds
    python benchmarks/bench_predict_hardware.py --runs 9

Prints the Taiwania/H200 median ratio, a number to watch rather than a pass/fail: the two scenarios differ in
GPU count and layouts, but a ratio far above 1 once pointed at the cube-mesh ring bandwidth being recomputed
(scipy's LP) on every Taiwania prediction.
"""

from __future__ import annotations

import argparse
import statistics

from bench_predict import wall_times_s

SCENARIOS = {
    "taiwania2": ["predict", "--gpus", "16"],
    "hgx-h200": ["predict", "--hardware", "hgx-h200", "--gpus", "8"],
    "help": ["--help"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    medians_s = {}
    for name, cli_args in SCENARIOS.items():
        times = wall_times_s(cli_args, args.runs)
        medians_s[name] = statistics.median(times)
        print(f"perfmodel {' '.join(cli_args)}: median {medians_s[name]:.3f} s wall over {args.runs} runs "
              f"(min {min(times):.3f}, max {max(times):.3f})")
    print(f"Taiwania/H200 median ratio: {medians_s['taiwania2'] / medians_s['hgx-h200']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
