"""``perfmodel plan``: the fewest GPUs (and layout) that serve a request rate within p99 latency targets."""

from __future__ import annotations

import argparse
import sys

from perfmodel.cli.intervals import add_interval_argument, csv_row, level
from perfmodel.cli.options import (BURSTINESS, GPUS, SEED, add_format_argument, add_length_arguments,
                                   add_offload_arguments, add_scenario_arguments, lengths, scenario_options)
from perfmodel.cli.validate import integer, max_workers, output_file, real

SECONDS = real(0, 1e9, low_open=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="fewest GPUs (and layout) that serve a request rate within p99 targets",
                       epilog=f"exit status: 0 when a layout sustains the load, {NONE_SUSTAINS} when no layout of up "
                              "to --gpus-max GPUs does, 2 on bad input")
    p.add_argument("--request-rate", type=real(0, 1e9, low_open=True), required=True, help="requests/s to serve (Poisson arrivals)")
    p.add_argument("--ttft-p99", type=SECONDS, default=None, metavar="S", help="p99 time to first token target (s)")
    p.add_argument("--tpot-p99", type=SECONDS, default=None, metavar="S", help="p99 time per output token target (s)")
    p.add_argument("--gpus-max", type=GPUS, default=64, help="largest GPU count to try (default: 64)")
    p.add_argument("--workers", type=integer(1, max_workers()), default=None, help="simulation processes (default: one per core)")
    add_scenario_arguments(p, workload=False)
    add_length_arguments(p.add_argument_group("workload"), num_prompts_default=None)
    p.add_argument("--burstiness", type=BURSTINESS, default=1.0, help="gamma shape of the gaps (1 = Poisson)")
    p.add_argument("--seed", type=SEED, default=0)
    add_offload_arguments(p)
    add_format_argument(p)
    add_interval_argument(p)
    p.add_argument("--confidence", type=float, default=None, metavar="P",
                   help="plan on the intervals at this level (e.g. 0.9): the low throughput must carry the load "
                        "and the high p99 latencies meet the targets")
    c = p.add_argument_group("several hardware (--hardware a,b,...: the fewest GPUs of each, ranked)")
    c.add_argument("--gpu-hour-cost", action="append", default=[], metavar="NAME=PRICE",
                   help="price of one GPU-hour of that hardware (repeatable or comma-separated), for the cost per "
                        "million output tokens; no prices are built in")
    c.add_argument("--plot", metavar="FILE", default=None, type=output_file,
                   help="bar chart of the comparison (PNG; needs matplotlib)")
    hardware = next(a for a in p._actions if a.dest == "hardware")
    hardware.type, hardware.help = _hardware_list, "GPU, cluster or YAML path, or several separated by commas"
    p.set_defaults(handler=run)


# exit codes: 0 a layout sustains the load, NONE_SUSTAINS when none of up to --gpus-max GPUs does, 2 bad input
NONE_SUSTAINS = 1
MAX_PLAN_PROMPTS = 100_000  # requests per simulated layout (~2 s each; a plan simulates dozens of layouts)


def _hardware_list(text: str) -> str:
    """One or more hardware names or YAML paths separated by commas, each checked as ``--hardware`` is."""
    from perfmodel.cli.options import HARDWARE

    names = [HARDWARE(part.strip()) for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected hardware names, got {text!r}")
    if len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"a hardware is named twice in {text!r}")
    return ",".join(names)


PLAN_COLUMNS = (
    ("gpus", "GPUs"), ("layout", "layout"), ("status", "status (decides)"),
    ("analytical_requests_per_second", "closed-form max req/s"),
    ("achieved_requests_per_second", "simulated req/s"), ("ttft_ms_p99", "TTFT p99 ms"), ("tpot_ms_p99", "TPOT p99 ms"),
    ("gpu_hours_per_million_output_tokens", "GPU-h/Mtok"), ("reason", "why"),
)


def run(args: argparse.Namespace) -> int:
    from perfmodel.errors import UserError

    if args.num_prompts is not None and args.num_prompts > MAX_PLAN_PROMPTS:
        raise UserError(f"plan: --num-prompts {args.num_prompts:,} is more than {MAX_PLAN_PROMPTS:,} requests per "
                        "simulated layout (a plan simulates every candidate layout); leave it out for the default")
    if "," in args.hardware or args.gpu_hour_cost or args.plot:
        return run_comparison(args)
    from perfmodel.analysis.plan import plan_capacity
    from perfmodel.progress import Progress
    from perfmodel.analysis.report import dumps_csv, dumps_json, table

    inputs, outputs = lengths(args)
    progress = Progress(sys.stderr)
    try:
        result = plan_capacity(
            request_rate=args.request_rate, ttft_s_p99_target=args.ttft_p99, tpot_s_p99_target=args.tpot_p99,
            gpus_max=args.gpus_max, input_len=inputs, output_len=outputs, num_prompts=args.num_prompts,
            burstiness=args.burstiness, seed=args.seed, workers=args.workers, progress=progress,
            options=scenario_options(args, entry_point="serve"), confidence=args.confidence,
            interval_level=level(args))
    finally:
        progress.close()
    if args.format == "json":
        print(dumps_json({**{k: getattr(result, k) for k in ("request_rate", "ttft_s_p99_target", "tpot_s_p99_target", "gpus_max",
                                                             "num_requests", "message", "confidence",
                                                             "point_estimate_gpus")},
                          "gpus": result.gpus, "engine": result.engine, "best": result.best,
                          "trials": list(result.trials), "notes": list(result.notes)}))
        return 0 if result.best else NONE_SUSTAINS
    from perfmodel.analysis.plan_trial import PLAN_FIGURES
    from perfmodel.uncertainty.intervals import Interval, plus_minus

    def interval(t):
        iv = t.interval
        return Interval(level=iv["level"], bounds={k: tuple(v) for k, v in iv.items() if k != "level"}) if iv else None

    if args.format == "csv":
        print(dumps_csv([csv_row({k: v for k, v in t.__dict__.items() if k != "interval"}, interval(t), PLAN_FIGURES)
                         for t in result.trials]), end="")
        return 0 if result.best else NONE_SUSTAINS
    rows = [{**t.__dict__, "layout": str(t.layout), "ttft_ms_p99": plus_minus(t.ttft_s_p99, interval(t), "ttft_s_p99", 1e3),
             "tpot_ms_p99": plus_minus(t.tpot_s_p99, interval(t), "tpot_s_p99", 1e3)} for t in result.trials]
    print(f"plan: {args.model} on {args.hardware}, {args.request_rate:g} req/s, {result.num_requests} simulated "
          f"requests per layout (seed {args.seed})")
    for note in result.notes:
        print(f"note: {note}")
    print(table(rows, PLAN_COLUMNS))
    from perfmodel.analysis.steady_state import SUSTAIN_FRACTION

    print(f"status decides: a layout passes when its simulated req/s keeps up with at least {SUSTAIN_FRACTION:.0%} "
          f"of the rate ({SUSTAIN_FRACTION * args.request_rate:.3g} of {args.request_rate:g}), its queue does not "
          "grow and its p99s meet the targets; closed-form max req/s only screens layouts")
    print()
    print(("answer: " if result.best else "") + result.message)
    return 0 if result.best else NONE_SUSTAINS


COMPARE_COLUMNS = (
    ("rank", "#"), ("hardware", "hardware"), ("gpus", "GPUs"), ("layout", "layout"),
    ("output_tokens_per_second", "out tok/s"), ("output_tokens_per_second_per_gpu", "out tok/s/GPU"),
    ("ttft_ms_p99", "TTFT p99 ms"), ("tpot_ms_p99", "TPOT p99 ms"),
    ("gpu_hours_per_million_output_tokens", "GPU-h/Mtok"), ("gpu_hour_cost", "$/GPU-h"),
    ("cost_per_million_output_tokens", "$/Mtok"),
)


def run_comparison(args: argparse.Namespace) -> int:
    """``--hardware a,b,...``: plan each, rank the answers (perfmodel.analysis.plan_compare)."""
    import dataclasses

    from perfmodel.analysis.plan_compare import compare_hardware, parse_costs
    from perfmodel.analysis.report import dumps_csv, dumps_json, table

    if args.confidence is not None:
        from perfmodel.errors import UserError

        raise UserError("--confidence plans one hardware at a time; drop it when comparing several")
    names = args.hardware.split(",")
    inputs, outputs = lengths(args)
    choices = compare_hardware(
        names, parse_costs(args.gpu_hour_cost), options=scenario_options(args, entry_point="serve"),
        request_rate=args.request_rate, ttft_s_p99_target=args.ttft_p99, tpot_s_p99_target=args.tpot_p99,
        gpus_max=args.gpus_max, input_len=inputs, output_len=outputs, num_prompts=args.num_prompts,
        burstiness=args.burstiness, seed=args.seed, workers=args.workers, interval_level=level(args))
    plot_note = _plot(args, choices)
    rows = [{"rank": i, **dataclasses.asdict(c)} for i, c in enumerate(choices, 1)]
    code = 0 if any(c.gpus for c in choices) else NONE_SUSTAINS  # as for one hardware
    if args.format == "json":
        print(dumps_json({"model": args.model, "request_rate": args.request_rate, "ttft_s_p99_target": args.ttft_p99,
                          "tpot_s_p99_target": args.tpot_p99, "gpus_max": args.gpus_max, "hardware": rows,
                          "plot": plot_note or None}))
        return code
    if args.format == "csv":
        print(dumps_csv([{k: v for k, v in r.items() if k != "message"} for r in rows]), end="")
        return code
    print(f"plan: {args.model} at {args.request_rate:g} req/s on {len(names)} hardware, the fewest GPUs of each "
          f"that serve it; ranked by {'cost' if _all_priced(choices) else 'GPU-hours'} per million output tokens")
    shown = [{**r, "layout": r["layout"] or "none serves the load", "gpus": r["gpus"] or "-",
              "ttft_ms_p99": r["ttft_s_p99"] * 1e3, "tpot_ms_p99": r["tpot_s_p99"] * 1e3,
              **{k: "-" for k in ("gpu_hour_cost", "cost_per_million_output_tokens") if r[k] is None}} for r in rows]
    print(table(shown, COMPARE_COLUMNS))
    print()
    for c in choices:
        print(f"{c.hardware}: {c.message}")
    if not _all_priced(choices):
        print("note: give --gpu-hour-cost NAME=PRICE for every hardware to rank by cost")
    if plot_note:
        print(plot_note)
    return code


def _all_priced(choices) -> bool:
    return all(c.cost_per_million_output_tokens is not None for c in choices if c.gpus)


def _plot(args, choices) -> str:
    if not args.plot:
        return ""
    from perfmodel.analysis.plots import have_matplotlib, plot_hardware_comparison

    if not have_matplotlib():
        return "plot skipped: matplotlib is not installed (pip install 'perfmodel[plot]')"
    targets = ", ".join(t for t in (f"p99 TTFT <= {args.ttft_p99:g} s" if args.ttft_p99 else "",
                                    f"p99 TPOT <= {args.tpot_p99 * 1e3:g} ms" if args.tpot_p99 else "") if t)
    path = plot_hardware_comparison(choices, args.plot,
                                    title=f"{args.model} at {args.request_rate:g} req/s" + (f", {targets}" if targets else ""))
    return f"wrote {path}"
