"""``perfmodel compare``: continuous vs static batching on the same workload and layout, with a plot."""

from __future__ import annotations

import argparse
import math

from perfmodel.cli.options import (add_format_argument, add_layout_arguments, add_offload_arguments,
                                   add_scenario_arguments, add_workload_arguments)
from perfmodel.cli.simulate import header, setup, workload_dict
from perfmodel.cli.validate import output_file_or_empty


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compare", help="continuous vs static batching on the same workload and layout")
    add_layout_arguments(c)
    add_scenario_arguments(c, workload=False)
    add_workload_arguments(c, batching=False)
    add_offload_arguments(c)
    c.add_argument("--plot", metavar="FILE", default="compare.png", type=output_file_or_empty,
                   help="PNG with throughput, latency CDFs and batch occupancy (default: compare.png; '' = none)")
    add_format_argument(c)
    c.set_defaults(handler=run)


COMPARE_ROWS = (
    ("output tokens/s", lambda m: m.output_tokens_per_second),
    ("total tokens/s", lambda m: m.tokens_per_second),
    ("requests/s", lambda m: m.requests_per_second),
    ("TTFT p50 (ms)", lambda m: m.ttft_s_median * 1e3),
    ("TTFT p99 (ms)", lambda m: m.ttft_s_p99 * 1e3),
    ("TPOT p50 (ms)", lambda m: m.tpot_s_median * 1e3),
    ("TPOT p99 (ms)", lambda m: m.tpot_s_p99 * 1e3),
    ("E2E p50 (ms)", lambda m: m.e2e_s_median * 1e3),
    ("E2E p99 (ms)", lambda m: m.e2e_s_p99 * 1e3),
    ("mean batch (seqs/step)", lambda m: m.mean_batch_size),
    ("padding waste", lambda m: m.padding_waste_fraction),
    ("preemptions", lambda m: m.num_preemptions),
)


def run(args: argparse.Namespace) -> int:
    from perfmodel.report import dumps_csv, dumps_json, table
    from perfmodel.simulate import compare_batching

    scenario, layout, requests = setup(args)
    results = compare_batching(scenario, layout, requests, max_concurrency=args.max_concurrency,
                               router=args.router, seed=args.seed)
    c, s = results["continuous"].metrics, results["static"].metrics
    rows = []
    for name, get in COMPARE_ROWS:
        a, b = get(c), get(s)
        rows.append({"metric": name, "continuous": a, "static": b,
                     "ratio": a / b if b else math.nan})
    plot_note = _plot(args, scenario, layout, results)
    if args.format == "json":
        print(dumps_json({"model": scenario.model.name, "hardware": scenario.cluster.name,
                          "layout": {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp},
                          "workload": workload_dict(args, len(requests)),
                          "continuous": c.to_dict(), "static": s.to_dict(),
                          "throughput_ratio": c.tokens_per_second / s.tokens_per_second, "plot": plot_note}))
        return 0
    if args.format == "csv":
        print(dumps_csv([{"batching": name, **r.metrics.to_dict()} for name, r in results.items()]), end="")
        return 0
    print(header(args, scenario, layout, requests, "continuous vs static"))
    print()
    for row in rows:
        if row["metric"] == "padding waste":
            row.update(continuous=f"{c.padding_waste_fraction:.1%}", static=f"{s.padding_waste_fraction:.1%}",
                       ratio="")
    print(table(rows, (("metric", "metric"), ("continuous", "continuous"), ("static", "static"),
                       ("ratio", "continuous/static"))))
    ratio = c.tokens_per_second / s.tokens_per_second
    print(f"\ncontinuous batching: {ratio:.2f}x the throughput of static batching")
    if plot_note:
        print(plot_note)
    return 0


def _plot(args, scenario, layout, results) -> str:
    if not args.plot:
        return ""
    from perfmodel.plots import have_matplotlib, plot_compare

    if not have_matplotlib():
        return "plot skipped: matplotlib is not installed (pip install 'perfmodel[plot]')"
    path = plot_compare(results, args.plot, title=f"{scenario.model.name}, {layout}, {scenario.cluster.name}")
    return f"wrote {path}"
