"""How much the anchors cost a one-model online fit: in-sample and leave-one-layout-out errors of the Taiwania 2
V100 runs (data/taiwania/results.jsonl) for one anchor weight, or without anchors.

    python benchmarks/bench_anchor_weight.py                      # the shipped fit: anchors at weight 1
    python benchmarks/bench_anchor_weight.py --weight 0.3
    python benchmarks/bench_anchor_weight.py --no-anchors         # pull toward the datasheet prior instead
    python benchmarks/bench_anchor_weight.py --max-nfev 150       # the online fit's evaluation limit (default 40)

Prints the in-sample fit's median APE per metric, its coefficients and findings, then the leave-one-layout-out
median APE per metric and per held-out layout. About 3 minutes per setting on 2 cores. The numbers of 2026-12-07
are in docs/accuracy-notes.md (Taiwania 2).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weight", type=float, default=None, help="weight of the anchors' penalties (default 1)")
    ap.add_argument("--no-anchors", action="store_true", help="no anchors: the online fit's pull toward the prior")
    ap.add_argument("--anchors", default=str(ROOT / "data/anchors/v100-sxm2-32gb.yaml"),
                    help="anchor set (default: the shipped V100 one)")
    ap.add_argument("--max-nfev", type=int, default=40, help="evaluations of each local fit (fit_online's default 40)")
    ap.add_argument("--workers", type=int, default=None, help="folds fitted at once (default: one per core)")
    args = ap.parse_args(argv)

    import calibrate.fit.online as online

    online.fit_online = functools.partial(online.fit_online, max_nfev=args.max_nfev)
    from calibrate.fit.observations import load_observations
    from calibrate.fit.offline import CoefficientFitter
    from calibrate.records.store import load_records
    from calibrate.report.check import compare, cross_validate, summarize
    from perfmodel.cost.anchors import load_anchors
    from perfmodel.cost.coefficients import Coefficients

    cluster, observations = load_observations(
        load_records(str(ROOT / "data/taiwania/results.jsonl"), latest_only=True), "taiwania2")
    anchors = None if args.no_anchors else load_anchors(args.anchors)
    options = dict(anchors=anchors, regularization=args.weight)

    def medians(frame) -> str:
        return ", ".join(f"{s.metric} {100 * s.median_ape:.1f}%" for s in summarize(frame))

    start = time.perf_counter()
    fitter = CoefficientFitter(cluster, Coefficients(), **options).fit(observations)
    print(f"in-sample ({time.perf_counter() - start:.0f} s): {medians(compare(observations, cluster, fitter.coefficients_))}")
    for name in fitter.fitted_:
        print(f"  {name} = {getattr(fitter.coefficients_, name):.4g}")
    for finding in fitter.findings_:
        print(f"  finding: {finding}")
    start = time.perf_counter()
    frame = cross_validate(observations, cluster, Coefficients(), by="layout", workers=args.workers, **options)
    print(f"leave-one-layout-out ({time.perf_counter() - start:.0f} s): {medians(frame)}")
    throughput = frame[frame.metric == "output_tokens_per_second"].groupby("fold")["ape"].median()
    for fold, ape in throughput.items():
        print(f"  {fold}: output tokens/s {100 * ape:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
