"""``perfmodel compare``: continuous vs static batching on the same workload and layout, with a plot."""

from __future__ import annotations

import argparse
import math

from perfmodel.cli.options import (add_format_argument, add_layout_arguments, add_offload_arguments,
                                   add_scenario_arguments, add_workload_arguments, is_online)
from perfmodel.cli.intervals import add_interval_argument, csv_row, with_interval
from perfmodel.cli.simulate import header, metrics_interval, setup, workload_dict
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
    add_interval_argument(c)
    # real traffic's outputs vary (fixed lengths finish together and hide what continuous batching is for)
    c.set_defaults(handler=run, output_dist=DEFAULT_OUTPUT_DIST)
    c.epilog = (f"compare defaults to --output-dist {DEFAULT_OUTPUT_DIST} with --output-sigma "
                f"{DEFAULT_OUTPUT_SIGMA:g} when no sigma is given")


DEFAULT_OUTPUT_DIST = "lognormal"
DEFAULT_OUTPUT_SIGMA = 0.8

COMPARE_ROWS = (
    ("output tokens/s", lambda m: m.output_tokens_per_second),
    ("total tokens/s", lambda m: m.tokens_per_second),
    ("requests/s", lambda m: m.requests_per_second),
    ("TTFT p50 (ms)", lambda m: m.ttft_s_median * 1e3),  # shown in ms; ROW_FIGURES has the seconds
    ("TTFT p99 (ms)", lambda m: m.ttft_s_p99 * 1e3),
    ("TPOT p50 (ms)", lambda m: m.tpot_s_median * 1e3),
    ("TPOT p99 (ms)", lambda m: m.tpot_s_p99 * 1e3),
    ("E2E p50 (ms)", lambda m: m.e2e_s_median * 1e3),
    ("E2E p99 (ms)", lambda m: m.e2e_s_p99 * 1e3),
    ("mean batch (seqs/step)", lambda m: m.mean_batch_size),
    ("padding waste", lambda m: m.padding_waste_fraction),
    ("preemptions", lambda m: m.num_preemptions),
)

# the rows that are predicted figures (their interval is shown as ±)
ROW_FIGURES = {"output tokens/s": ("output_tokens_per_second", 1.0), "total tokens/s": ("tokens_per_second", 1.0),
               "requests/s": ("requests_per_second", 1.0), "TTFT p50 (ms)": ("ttft_s_median", 1e3),
               "TTFT p99 (ms)": ("ttft_s_p99", 1e3), "TPOT p50 (ms)": ("tpot_s_median", 1e3),
               "TPOT p99 (ms)": ("tpot_s_p99", 1e3), "E2E p50 (ms)": ("e2e_s_median", 1e3),
               "E2E p99 (ms)": ("e2e_s_p99", 1e3)}


def run(args: argparse.Namespace) -> int:
    from perfmodel.analysis.report import dumps_csv, dumps_json, table
    from perfmodel.analysis.simulate import compare_batching

    if args.output_dist == DEFAULT_OUTPUT_DIST and args.output_sigma is None:
        args.output_sigma = DEFAULT_OUTPUT_SIGMA
    scenario, layout, requests = setup(args)
    results = compare_batching(scenario, layout, requests, max_concurrency=args.max_concurrency,
                               router=args.router, seed=args.seed, served=is_online(args))
    c, s = results["continuous"].metrics, results["static"].metrics
    intervals = {name: metrics_interval(args, scenario, layout, r.metrics) for name, r in results.items()}
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
                          "continuous": with_interval(c.to_dict(), intervals["continuous"]),
                          "static": with_interval(s.to_dict(), intervals["static"]),
                          "throughput_ratio": c.tokens_per_second / s.tokens_per_second, "plot": plot_note,
                          "notes": list(scenario.notes)}))
        return 0
    if args.format == "csv":
        from perfmodel.uncertainty.intervals import SIMULATE_FIGURES

        print(dumps_csv([csv_row({"batching": name, **r.metrics.to_dict()}, intervals[name], SIMULATE_FIGURES)
                         for name, r in results.items()]), end="")
        return 0
    print(header(args, scenario, layout, requests, "continuous vs static"))
    for note in scenario.notes:
        print(f"note: {note}")
    print()
    from perfmodel.uncertainty.intervals import plus_minus

    for row in rows:
        if row["metric"] in ROW_FIGURES:
            figure, scale = ROW_FIGURES[row["metric"]]
            for policy, m in (("continuous", c), ("static", s)):
                row[policy] = plus_minus(getattr(m, figure), intervals[policy], figure, scale)
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
    from perfmodel.analysis.plots import have_matplotlib, plot_compare

    if not have_matplotlib():
        return "plot skipped: matplotlib is not installed (pip install 'perfmodel[plot]')"
    path = plot_compare(results, args.plot, title=f"{scenario.model.name}, {layout}, {scenario.cluster.name}")
    return f"wrote {path}"
