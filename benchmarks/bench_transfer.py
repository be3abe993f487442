"""How far the H200 fit transfers to models it never saw (issue 22): the Taiwania situation on the project's own data.

The cases are calibrate/fit/transfer.py's: fit (``calibrate.fit.offline.CoefficientFitter``, as ``perfmodel calibrate fit``
runs it, with ``--anchors`` as ``calibrate fit --anchors``) on the runs of ONE model and predict every other
model's offline runs (each model with at least ``--min-runs`` offline runs); and fit on the models <= 14B and
predict those of 27B-70B. A prediction is end to end (the memory model's KV cache, as a user gets it before
booking); the error is the offline throughput's (tokens/s) absolute percentage error.

    python benchmarks/bench_transfer.py                  # the shipped H200 profile's data and anchors, 2 workers
    python benchmarks/bench_transfer.py --no-anchors     # the baseline: fits without anchors

Prints one line per case and per predicted model, each part's median, the coverage of the transfer intervals
(each case's predictions against the spread of the other cases' errors) and as its last line
``transfer median APE: X%`` (the median over every prediction of both parts).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METRIC = "tokens_per_second"


def profile_sources(profile_path: Path) -> tuple[str, list[str]]:
    """(gpu, results files) the profile was fitted on, from its ``gpu:`` and ``source:`` fields."""
    import yaml

    doc = yaml.safe_load(profile_path.read_text())
    return doc["gpu"], [s.strip() for s in str(doc["source"]).split(",") if s.strip()]


def load(profile_path: Path):
    from calibrate.fit.observations import load_observations
    from calibrate.records.store import load_records

    gpu, files = profile_sources(profile_path)
    records = []
    for path in files:
        records += load_records(ROOT / path, latest_only=True)
    return load_observations(records, gpu)


def coverage(per_case: list[list[dict]], level: float) -> tuple[int, int, list[float]]:
    """(covered, predictions, half-widths): each case's offline throughputs against the interval an unseen model
    gets from the other cases' transfer residuals (leave one case out, so no prediction is judged by an interval
    built on its own errors): perfmodel.uncertainty.intervals's regime lookup and quantiles of the pool, the residual
    part of the interval (the coefficient term only widens it)."""
    from perfmodel.uncertainty.intervals import log_quantiles, lookup

    covered, total, halves = 0, 0, []
    for k, rows in enumerate(per_case):
        pool: dict = {}
        for j, other in enumerate(per_case):
            if j != k:
                for r in other:
                    pool.setdefault(r["regime"], {}).setdefault(r["metric"], []).append(r["log_residual"])
        for r in rows:
            if r["metric"] != METRIC:
                continue
            residuals = lookup(pool, METRIC, r["regime"])
            lo, _, hi = log_quantiles(residuals, level)
            covered += lo <= r["log_residual"] <= hi
            total += 1
            halves.append((math.exp(hi) - math.exp(lo)) / 2)
    return covered, total, halves


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    from calibrate.fit.transfer import MIN_RUNS, transfer_cases, transfer_rows

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", type=Path, default=ROOT / "perfmodel" / "profiles" / "h200-sxm.yaml",
                        help="profile whose source runs to use (default: the shipped H200 profile)")
    parser.add_argument("--min-runs", type=int, default=MIN_RUNS, help="offline runs a model needs to be fitted alone")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--anchors", type=Path, default=None,
                        help="anchor set the fits take their priors from (calibrate fit --anchors); default: "
                             "data/anchors/<the profile's gpu>.yaml, as the shipped profile was fitted")
    parser.add_argument("--no-anchors", action="store_true",
                        help="fit without anchors (the datasheet defaults' weak pull: the baseline before issue 22)")
    parser.add_argument("--level", type=float, default=0.9, help="interval level of the coverage line")
    args = parser.parse_args(argv)
    options = {}
    anchors = args.anchors or ROOT / "data" / "anchors" / f"{profile_sources(args.profile)[0]}.yaml"
    if not args.no_anchors and anchors.is_file():
        from perfmodel.cost.anchors import load_anchors

        options["anchors"] = load_anchors(anchors)
        print(f"fits with anchors {anchors.relative_to(ROOT) if anchors.is_relative_to(ROOT) else anchors}")
    else:
        print("fits without anchors")
    cluster, observations = load(args.profile)
    cases = transfer_cases(observations, args.min_runs)
    per_case = transfer_rows(observations, cluster, cases=cases, workers=args.workers, **options)
    everything: list[dict] = []
    for case, rows in zip(cases, per_case):
        rows = [r for r in rows if r["metric"] == METRIC]
        everything += rows
        apes = [ape(r) for r in rows]
        bias = -float(np.median([r["log_residual"] for r in rows]))
        print(f"{case.part:15s} {case.name:24s} {len(apes):3d} runs  median APE {pct(np.median(apes)):>6s}  "
              f"p90 {pct(np.quantile(apes, 0.9)):>6s}  median bias {100 * bias:+.1f}%")
        for model in sorted({r["model"] for r in rows}):
            mine = [ape(r) for r in rows if r["model"] == model]
            print(f"    {model:22s} {len(mine):3d} runs  median APE {pct(np.median(mine)):>6s}  max {pct(max(mine))}")
    for part in ("one model", "small to large"):
        apes = [ape(r) for r in everything if r["part"] == part]
        print(f"{part}: {len(apes)} predictions, median APE {pct(np.median(apes))}, p90 {pct(np.quantile(apes, 0.9))}")
    covered, total, halves = coverage(per_case, args.level)
    print(f"{args.level:.0%} transfer intervals (leave one case out): {covered} of {total} predictions covered "
          f"({covered / total:.1%}), median half-width ±{pct(np.median(halves))}")
    print(f"transfer median APE: {pct(np.median([ape(r) for r in everything]))}")
    return 0


def ape(row: dict) -> float:
    return abs(row["predicted"] - row["measured"]) / row["measured"]


if __name__ == "__main__":
    sys.exit(main())
