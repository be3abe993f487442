"""``perfmodel pareto``: output tokens/s per GPU against tokens/s per user over layouts x max-num-seqs."""

from __future__ import annotations

import argparse

from perfmodel.cli.options import GPUS, SEED, TOKENS, add_format_argument, add_scenario_arguments, scenario_options
from perfmodel.cli.validate import MAX_NUM_SEQS, integer, output_file

PARETO_COLUMNS = (
    ("frontier", "frontier"), ("layout", "layout"), ("max_num_seqs", "max-num-seqs"),
    ("concurrency", "concurrency"), ("output_tokens_per_second_per_user", "out tok/s/user"),
    ("output_tokens_per_second_per_gpu", "out tok/s/GPU"), ("output_tokens_per_second", "out tok/s"),
    ("ttft_ms", "TTFT p50 ms"), ("tpot_ms", "TPOT p50 ms"),
)


MAX_SIZES = 16  # --max-num-seqs-list entries (each is a simulation per layout)


def _sizes(text: str) -> tuple[int, ...]:
    """Comma-separated batch sizes, each 1..MAX_NUM_SEQS, at most MAX_SIZES of them."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts or len(parts) > MAX_SIZES:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_SIZES} comma-separated sizes, got {text[:40]!r}")
    size = integer(1, MAX_NUM_SEQS)
    return tuple(size(part.strip()) for part in parts)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pareto", help="throughput per GPU vs tokens/s per user over layouts x max-num-seqs")
    p.add_argument("--gpus", type=GPUS, default=16, help="GPUs to use (default: 16)")
    p.add_argument("--max-num-seqs-list", type=_sizes, default=(1, 4, 16, 64, 256), metavar="N,N,...",
                   help="engine batch sizes to try; each runs closed-loop at that concurrency per replica "
                        "(default: 1,4,16,64,256)")
    p.add_argument("--input-len", type=TOKENS, default=1000, help="prompt tokens (default 1000)")
    p.add_argument("--output-len", type=TOKENS, default=200, help="output tokens (default 200)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--frontier-only", action="store_true", help="list only the frontier's points")
    p.add_argument("--plot", metavar="FILE.png", type=output_file, help="write the frontier plot")
    add_scenario_arguments(p, workload=False)
    add_format_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from perfmodel.analysis.pareto import pareto_points
    from perfmodel.analysis.report import dumps_csv, dumps_json, table
    from perfmodel.scenario import Scenario

    scenario = Scenario.from_options(scenario_options(args, entry_point="serve"))
    points = pareto_points(scenario, args.gpus, max_num_seqs=args.max_num_seqs_list, input_len=args.input_len,
                           output_len=args.output_len, seed=args.seed)
    title = (f"{scenario.model.name} ({scenario.precision.weight_dtype}) on {args.gpus} x "
             f"{scenario.cluster.gpu.display_name} [{scenario.cluster.name}], vLLM {scenario.engine.vllm_version}; "
             f"closed loop, {args.input_len} in / {args.output_len} out")
    plot_note = _plot(args, points, title)
    shown = [p for p in points if p.on_frontier] if args.frontier_only else points
    if args.format == "json":
        print(dumps_json({"model": scenario.model.name, "hardware": scenario.cluster.name, "gpus": args.gpus,
                          "input_len": args.input_len, "output_len": args.output_len, "engine": scenario.engine,
                          "points": shown, "plot": plot_note or None, "notes": list(scenario.notes)}))
        return 0
    if args.format == "csv":
        print(dumps_csv([p.__dict__ for p in shown]), end="")
        return 0
    print(title)
    for note in scenario.notes:
        print(f"note: {note}")
    rows = [{**p.__dict__, "frontier": "*" if p.on_frontier else "", "layout": str(p.layout),
             "ttft_ms": p.ttft_s_median * 1e3, "tpot_ms": p.tpot_s_median * 1e3} for p in shown]
    print(table(rows, PARETO_COLUMNS))
    if plot_note:
        print(plot_note)
    return 0


def _plot(args: argparse.Namespace, points, title: str) -> str:
    if not args.plot:
        return ""
    from perfmodel.analysis.plots import have_matplotlib, plot_pareto

    if not have_matplotlib():
        return "plot skipped: matplotlib is not installed (pip install 'perfmodel[plot]')"
    return f"wrote {plot_pareto(points, args.plot, title=title)}"
