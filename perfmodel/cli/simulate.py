"""``perfmodel simulate``: one layout under a workload, with latency percentiles. Also the setup and header
that ``compare`` shares (layout, requests, the line that says what was simulated)."""

from __future__ import annotations

import argparse
import math

from perfmodel.cli.options import (add_format_argument, add_layout_arguments, add_offload_arguments,
                                   add_scenario_arguments, add_workload_arguments, is_online, lengths,
                                   scenario_options)
from perfmodel.cli.intervals import add_interval_argument, csv_row, footnote, level, with_interval
from perfmodel.cli.validate import timeline_file
from perfmodel.errors import UserError
from perfmodel.analysis.report import LATENCIES

STATS = ("mean", "median", "p90", "p99")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("simulate", help="simulate one layout under a workload (latency percentiles, throughput)")
    add_layout_arguments(s)
    add_scenario_arguments(s, workload=False)
    add_workload_arguments(s, batching=True)
    add_offload_arguments(s)
    s.add_argument("--timeline", metavar="FILE", type=timeline_file,
                   help="write per-step CSV to FILE and per-request CSV to <stem>-requests.csv")
    add_format_argument(s)
    add_interval_argument(s)
    s.set_defaults(handler=run)


def setup(args: argparse.Namespace):
    """Scenario, layout and requests from the flags."""
    from perfmodel.layout import Layout
    from perfmodel.scenario import Scenario
    from perfmodel.analysis.simulate import build_request_stream

    options = scenario_options(args, entry_point="serve" if is_online(args) else "offline")
    scenario = Scenario.from_options(options)
    layout = Layout(tp=args.tensor_parallel_size, pp=args.pipeline_parallel_size, dp=args.data_parallel_size)
    if args.kv_offload and layout.pp < 2:
        from perfmodel.cost.offload import NEEDS_PP
        raise UserError(NEEDS_PP)
    scenario.check_gpus(layout.gpus, what=f"{layout} needs")
    if args.trace is None:
        scenario.check_lengths(args.input_len, args.output_len, what="--input-len + --output-len (means)")
    inputs, outputs = lengths(args)
    requests = build_request_stream(input_len=inputs, output_len=outputs, num_prompts=args.num_prompts,
                              request_rate=args.request_rate, burstiness=args.burstiness, seed=args.seed,
                              trace=args.trace, max_model_len=scenario.max_model_len,
                              shared_prefix_len=args.shared_prefix_len, trace_format=args.trace_format,
                              trace_start_s=args.trace_start, trace_duration_s=args.trace_duration)
    return scenario, layout, requests


def header(args, scenario, layout, requests, batching: str) -> str:
    if args.trace:
        workload = f"trace {args.trace} ({len(requests)} requests"
        if args.trace_start or math.isfinite(args.trace_duration):
            workload += f", {args.trace_start:g} s to {args.trace_start + args.trace_duration:g} s"
        workload += ")"
    else:
        arrivals = ("all at t=0" if math.isinf(args.request_rate) else
                    f"{args.request_rate:g} req/s " + ("Poisson" if args.burstiness == 1 else
                                                      f"gamma(burstiness {args.burstiness:g})"))
        inputs = _describe_length(args.input_dist, args.input_len, args.input_sigma)
        outputs = _describe_length(args.output_dist, args.output_len, args.output_sigma)
        workload = f"{args.num_prompts} requests of {inputs} in / {outputs} out, {arrivals}"
    if args.shared_prefix_len:
        workload += f", a shared {args.shared_prefix_len}-token prefix"
        workload += " (cached)" if scenario.engine.enable_prefix_caching else ""
    if args.max_concurrency:
        workload += f", at most {args.max_concurrency} outstanding"
    offload = ", KV offload to host" if scenario.kv_offload else ""
    return (f"{scenario.model.name} on {layout.gpus} x {scenario.cluster.gpu.display_name} "
            f"[{scenario.cluster.name}], {layout}, router {args.router}; {workload}; {batching} batching{offload}")


def _describe_length(kind: str, mean: int, sigma: float | None) -> str:
    if kind == "fixed":
        return str(mean)
    return f"{kind}(mean {mean}, sigma {0.5 if sigma is None else sigma:g})"


def workload_dict(args, num_requests: int) -> dict:
    return {"num_prompts": num_requests, "input_len": args.input_len, "input_dist": args.input_dist,
            "input_sigma": args.input_sigma, "output_len": args.output_len, "output_dist": args.output_dist,
            "output_sigma": args.output_sigma, "request_rate": args.request_rate, "burstiness": args.burstiness,
            "max_concurrency": args.max_concurrency, "seed": args.seed, "trace": args.trace}


def metrics_interval(args, scenario, layout, m):
    """The interval of a simulation's metrics (online when requests arrive over time)."""
    from perfmodel.uncertainty.intervals import metrics_interval as interval

    return interval(scenario, layout, m, online=is_online(args), level=level(args))


def _throughput_rows(m, iv=None) -> list[dict]:
    from perfmodel.uncertainty.intervals import plus_minus

    return [
        {"name": "requests", "value": m.num_requests},
        {"name": "duration (s)", "value": plus_minus(m.elapsed_s, iv, "elapsed_s")},
        {"name": "requests/s", "value": plus_minus(m.requests_per_second, iv, "requests_per_second")},
        {"name": "input tokens/s", "value": plus_minus(m.input_tokens_per_second, iv, "input_tokens_per_second")},
        {"name": "output tokens/s", "value": plus_minus(m.output_tokens_per_second, iv, "output_tokens_per_second")},
        {"name": "total tokens/s", "value": plus_minus(m.tokens_per_second, iv, "tokens_per_second")},
        {"name": "mean batch (seqs/step)", "value": m.mean_batch_size},
        {"name": "KV usage mean / max", "value": f"{m.kv_usage_mean:.1%} / {m.kv_usage_max:.1%}"},
        {"name": "preemptions", "value": m.num_preemptions},
        {"name": "padding waste", "value": f"{m.padding_waste_fraction:.1%}"},
    ]


def _latency_rows(m, iv=None) -> list[dict]:
    from perfmodel.uncertainty.intervals import plus_minus

    return [{"name": label, **{s: plus_minus(getattr(m, f"{key}_s_{s}"), iv, f"{key}_s_{s}", 1e3) for s in STATS}}
            for key, label in ((k, k.upper()) for k in LATENCIES)]


def run(args: argparse.Namespace) -> int:
    from perfmodel.analysis.report import dumps_csv, dumps_json, table
    from perfmodel.analysis.simulate import write_timeline

    scenario, layout, requests = setup(args)
    result = scenario.simulate(layout, requests, max_concurrency=args.max_concurrency, router=args.router,
                               record_timeline=bool(args.timeline), seed=args.seed, served=is_online(args),
                               keep_requests=bool(args.timeline))
    m = result.metrics
    iv = metrics_interval(args, scenario, layout, m)
    written = write_timeline(result, args.timeline) if args.timeline else ()
    if args.format == "json":
        print(dumps_json({"model": scenario.model.name, "hardware": scenario.cluster.name,
                          "layout": {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp}, "router": args.router,
                          "batching": scenario.batching, "kv_offload": scenario.kv_offload,
                          "engine": scenario.engine, "workload": workload_dict(args, len(requests)),
                          "metrics": with_interval(m.to_dict(), iv), "vllm_benchmark": m.to_vllm_dict(),
                          "timeline_files": [str(p) for p in written], "notes": list(scenario.notes)}))
        return 0
    if args.format == "csv":
        from perfmodel.uncertainty.intervals import SIMULATE_FIGURES

        print(dumps_csv([csv_row({"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, **m.to_dict()}, iv,
                                 SIMULATE_FIGURES)]), end="")
        return 0
    print(header(args, scenario, layout, requests, scenario.batching))
    for note in scenario.notes:
        print(f"note: {note}")
    print()
    print(table(_throughput_rows(m, iv), (("name", "throughput"), ("value", "value"))))
    print()
    print(table(_latency_rows(m, iv), (("name", "latency (ms)"), *((s, s) for s in STATS))))
    if iv is not None:
        print("\n" + footnote(iv, scenario.profile.name))
    for path in written:
        print(f"wrote {path}")
    return 0
