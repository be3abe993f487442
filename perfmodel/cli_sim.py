"""``perfmodel simulate``, ``compare`` and ``plan``: the simulator's commands (registered by perfmodel.cli).

Workload flags are named as in vLLM's benchmarks (``--input-len``, ``--num-prompts``, ``--request-rate``,
``--burstiness``, ``--max-concurrency``, ``--seed``); ``--input-dist``/``--output-dist`` choose how lengths vary
around those means and ``--input-sigma``/``--output-sigma`` by how much.
"""

from __future__ import annotations

import argparse
import math
import sys

from perfmodel.cli import add_format_argument, add_scenario_arguments, build_scenario
from perfmodel.errors import UserError
from perfmodel.report import dumps_csv, dumps_json, table

LATENCIES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e", "E2E"))
STATS = ("mean", "median", "p90", "p99")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("simulate", help="simulate one layout under a workload (latency percentiles, throughput)")
    _add_layout_arguments(s)
    add_scenario_arguments(s, workload=False)
    _add_workload_arguments(s, batching=True)
    _add_offload_arguments(s)
    s.add_argument("--timeline", metavar="FILE",
                   help="write per-step CSV to FILE and per-request CSV to <stem>-requests.csv")
    add_format_argument(s)
    s.set_defaults(handler=cmd_simulate)

    c = sub.add_parser("compare", help="continuous vs static batching on the same workload and layout")
    _add_layout_arguments(c)
    add_scenario_arguments(c, workload=False)
    _add_workload_arguments(c, batching=False)
    _add_offload_arguments(c)
    c.add_argument("--plot", metavar="FILE", default="compare.png",
                   help="PNG with throughput, latency CDFs and batch occupancy (default: compare.png; '' = none)")
    add_format_argument(c)
    c.set_defaults(handler=cmd_compare)

    p = sub.add_parser("plan", help="fewest GPUs (and layout) that serve a request rate within p99 targets")
    p.add_argument("--request-rate", type=float, required=True, help="requests/s to serve (Poisson arrivals)")
    p.add_argument("--ttft-p99", type=float, default=None, metavar="S", help="p99 time to first token target (s)")
    p.add_argument("--tpot-p99", type=float, default=None, metavar="S", help="p99 time per output token target (s)")
    p.add_argument("--gpus-max", type=int, default=64, help="largest GPU count to try (default: 64)")
    p.add_argument("--workers", type=int, default=None, help="simulation processes (default: one per core)")
    add_scenario_arguments(p, workload=False)
    _add_lengths(p.add_argument_group("workload"), num_prompts_default=None)
    p.add_argument("--burstiness", type=float, default=1.0, help="gamma shape of the gaps (1 = Poisson)")
    p.add_argument("--seed", type=int, default=0)
    _add_offload_arguments(p)
    add_format_argument(p)
    p.set_defaults(handler=cmd_plan)


# -- arguments -------------------------------------------------------------------------------------------------
def _add_layout_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("layout")
    g.add_argument("--tensor-parallel-size", "--tp", "-tp", type=int, default=1)
    g.add_argument("--pipeline-parallel-size", "--pp", "-pp", type=int, default=1)
    g.add_argument("--data-parallel-size", "--dp", "-dp", type=int, default=1, help="replicas behind the router")
    g.add_argument("--router", default="round_robin", choices=("round_robin", "least_loaded", "random"))


def _add_lengths(g, *, num_prompts_default: int | None = 300) -> None:
    from perfmodel.simulate import DISTRIBUTIONS

    g.add_argument("--input-len", type=int, default=100, help="prompt tokens (mean; default 100)")
    g.add_argument("--output-len", type=int, default=600, help="output tokens (mean; default 600)")
    g.add_argument("--input-dist", default="fixed", choices=DISTRIBUTIONS)
    g.add_argument("--output-dist", default="fixed", choices=DISTRIBUTIONS)
    spread = ("spread (default 0.5): lognormal sigma of log; normal std/mean; uniform half-width/mean "
              "(vLLM's --random-range-ratio)")
    g.add_argument("--input-sigma", type=float, default=None, help=f"input {spread}")
    g.add_argument("--output-sigma", type=float, default=None, help=f"output {spread}")
    g.add_argument("--num-prompts", type=int, default=num_prompts_default,
                   help="requests" + (" (default: max(200, 60 s x rate), at most 3000)"
                                      if num_prompts_default is None else f" (default {num_prompts_default})"))


def _add_workload_arguments(parser: argparse.ArgumentParser, *, batching: bool) -> None:
    g = parser.add_argument_group("workload (vLLM benchmark names)")
    _add_lengths(g)
    g.add_argument("--request-rate", type=float, default=math.inf,
                   help="requests/s (default inf: all at t=0, offline)")
    g.add_argument("--burstiness", type=float, default=1.0, help="gamma shape of the gaps (1 = Poisson)")
    g.add_argument("--max-concurrency", type=int, default=None, help="most requests outstanding (closed loop)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--trace", metavar="FILE", help="CSV/JSONL trace of arrival_s, input and output lengths")
    if batching:
        g.add_argument("--batching", default="continuous", choices=("continuous", "static"))
    g.add_argument("--static-batch-size", type=int, default=None,
                   help="static batching: requests per batch (default: --max-num-seqs)")


def _add_offload_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("KV offload (PipeMax-style; needs PP >= 2)")
    g.add_argument("--kv-offload", action="store_true",
                   help="keep idle pipeline micro-batches' KV in host memory, copied over PCIe")
    g.add_argument("--kv-offload-host-fraction", type=float, default=0.5,
                   help="fraction of a node's host memory for offloaded KV, shared by its GPUs (default 0.5)")


def _lengths(args: argparse.Namespace):
    from perfmodel.simulate import length_distribution

    return (length_distribution(args.input_dist, args.input_len, args.input_sigma, flag="--input"),
            length_distribution(args.output_dist, args.output_len, args.output_sigma, flag="--output"))


def _describe_length(kind: str, mean: int, sigma: float | None) -> str:
    if kind == "fixed":
        return str(mean)
    return f"{kind}(mean {mean}, sigma {0.5 if sigma is None else sigma:g})"


def _setup(args: argparse.Namespace):
    """Scenario, layout and requests from the flags."""
    from perfmodel.layout import Layout
    from perfmodel.simulate import build_requests

    online = args.trace is not None or not math.isinf(args.request_rate) or args.max_concurrency is not None
    scenario = build_scenario(args, entry_point="serve" if online else "offline", kv_offload=args.kv_offload,
                              kv_offload_host_fraction=args.kv_offload_host_fraction)
    layout = Layout(tp=args.tensor_parallel_size, pp=args.pipeline_parallel_size, dp=args.data_parallel_size)
    if args.kv_offload and layout.pp < 2:
        from perfmodel.offload import NEEDS_PP
        raise UserError(NEEDS_PP)
    cluster = scenario.cluster
    if cluster.max_nodes_per_job is not None and layout.gpus > cluster.max_nodes_per_job * cluster.gpus_per_node:
        raise UserError(f"{layout} needs {layout.gpus} GPUs; {cluster.name} jobs may use at most "
                        f"{cluster.max_nodes_per_job * cluster.gpus_per_node}")
    inputs, outputs = _lengths(args)
    max_len = scenario.engine.max_model_len or scenario.model.max_position_embeddings
    requests = build_requests(input_len=inputs, output_len=outputs, num_prompts=args.num_prompts,
                              request_rate=args.request_rate, burstiness=args.burstiness, seed=args.seed,
                              trace=args.trace, max_model_len=max_len)
    return scenario, layout, requests


def _header(args, scenario, layout, requests, batching: str) -> str:
    if args.trace:
        workload = f"trace {args.trace} ({len(requests)} requests)"
    else:
        arrivals = ("all at t=0" if math.isinf(args.request_rate) else
                    f"{args.request_rate:g} req/s " + ("Poisson" if args.burstiness == 1 else
                                                      f"gamma(burstiness {args.burstiness:g})"))
        inputs = _describe_length(args.input_dist, args.input_len, args.input_sigma)
        outputs = _describe_length(args.output_dist, args.output_len, args.output_sigma)
        workload = f"{args.num_prompts} requests of {inputs} in / {outputs} out, {arrivals}"
    if args.max_concurrency:
        workload += f", at most {args.max_concurrency} outstanding"
    offload = ", KV offload to host" if scenario.kv_offload else ""
    return (f"{scenario.model.name} on {layout.gpus} x {scenario.cluster.gpu.display_name} "
            f"[{scenario.cluster.name}], {layout}, router {args.router}; {workload}; {batching} batching{offload}")


# -- simulate --------------------------------------------------------------------------------------------------
def _throughput_rows(m) -> list[dict]:
    return [
        {"name": "requests", "value": m.num_requests},
        {"name": "duration (s)", "value": m.duration_s},
        {"name": "requests/s", "value": m.requests_per_second},
        {"name": "input tokens/s", "value": m.input_tokens_per_second},
        {"name": "output tokens/s", "value": m.output_tokens_per_second},
        {"name": "total tokens/s", "value": m.tokens_per_second},
        {"name": "mean batch (seqs/step)", "value": m.mean_batch_size},
        {"name": "KV usage mean / max", "value": f"{m.kv_usage_mean:.1%} / {m.kv_usage_max:.1%}"},
        {"name": "preemptions", "value": m.num_preemptions},
        {"name": "padding waste", "value": f"{m.padding_waste_fraction:.1%}"},
    ]


def _latency_rows(m) -> list[dict]:
    return [{"name": label, **{s: getattr(m, f"{key}_s_{s}") * 1e3 for s in STATS}} for key, label in LATENCIES]


def cmd_simulate(args: argparse.Namespace) -> int:
    from perfmodel.simulate import simulate_layout, write_timeline

    scenario, layout, requests = _setup(args)
    result = simulate_layout(scenario, layout, requests, max_concurrency=args.max_concurrency, router=args.router,
                             record_timeline=bool(args.timeline), seed=args.seed)
    m = result.metrics
    written = write_timeline(result, args.timeline) if args.timeline else ()
    if args.format == "json":
        print(dumps_json({"model": scenario.model.name, "hardware": scenario.cluster.name,
                          "layout": {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp}, "router": args.router,
                          "batching": scenario.batching, "kv_offload": scenario.kv_offload,
                          "engine": scenario.engine, "workload": _workload_dict(args, len(requests)),
                          "metrics": m.to_dict(), "vllm_benchmark": m.to_vllm_dict(),
                          "timeline_files": [str(p) for p in written]}))
        return 0
    if args.format == "csv":
        print(dumps_csv([{"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, **m.to_dict()}]), end="")
        return 0
    print(_header(args, scenario, layout, requests, scenario.batching))
    print()
    print(table(_throughput_rows(m), (("name", "throughput"), ("value", "value"))))
    print()
    print(table(_latency_rows(m), (("name", "latency (ms)"), *((s, s) for s in STATS))))
    for path in written:
        print(f"wrote {path}")
    return 0


def _workload_dict(args, num_requests: int) -> dict:
    return {"num_prompts": num_requests, "input_len": args.input_len, "input_dist": args.input_dist,
            "input_sigma": args.input_sigma, "output_len": args.output_len, "output_dist": args.output_dist,
            "output_sigma": args.output_sigma, "request_rate": args.request_rate, "burstiness": args.burstiness,
            "max_concurrency": args.max_concurrency, "seed": args.seed, "trace": args.trace}


# -- compare ---------------------------------------------------------------------------------------------------
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


def cmd_compare(args: argparse.Namespace) -> int:
    from perfmodel.simulate import compare_batching

    scenario, layout, requests = _setup(args)
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
                          "workload": _workload_dict(args, len(requests)),
                          "continuous": c.to_dict(), "static": s.to_dict(),
                          "throughput_ratio": c.tokens_per_second / s.tokens_per_second, "plot": plot_note}))
        return 0
    if args.format == "csv":
        print(dumps_csv([{"batching": name, **r.metrics.to_dict()} for name, r in results.items()]), end="")
        return 0
    print(_header(args, scenario, layout, requests, "continuous vs static"))
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


# -- plan ------------------------------------------------------------------------------------------------------
PLAN_COLUMNS = (
    ("gpus", "GPUs"), ("layout", "layout"), ("status", "status"), ("analytical_requests_per_second", "max req/s"),
    ("achieved_requests_per_second", "req/s"), ("ttft_ms_p99", "TTFT p99 ms"), ("tpot_ms_p99", "TPOT p99 ms"),
    ("gpu_hours_per_million_output_tokens", "GPU-h/Mtok"), ("reason", "why"),
)


def cmd_plan(args: argparse.Namespace) -> int:
    from perfmodel.plan import Progress, plan_capacity
    from perfmodel.simulate import length_distribution

    options = {k: getattr(args, k) for k in ("model", "hardware", "quantization", "kv_cache_dtype", "calibration",
                                             "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
                                             "max_model_len", "block_size", "enforce_eager")}
    options["dtype"] = "float16" if args.dtype == "half" else args.dtype
    options = {k: v for k, v in options.items() if v is not None}
    if args.kv_offload:
        options.update(kv_offload=True, kv_offload_host_fraction=args.kv_offload_host_fraction)
    progress = Progress(sys.stderr)
    try:
        result = plan_capacity(
            request_rate=args.request_rate, ttft_p99_s=args.ttft_p99, tpot_p99_s=args.tpot_p99,
            gpus_max=args.gpus_max,
            input_len=length_distribution(args.input_dist, args.input_len, args.input_sigma, flag="--input"),
            output_len=length_distribution(args.output_dist, args.output_len, args.output_sigma, flag="--output"),
            num_prompts=args.num_prompts, burstiness=args.burstiness, seed=args.seed, workers=args.workers,
            progress=progress, **options)
    finally:
        progress.close()
    if args.format == "json":
        print(dumps_json({**{k: getattr(result, k) for k in ("request_rate", "ttft_p99_s", "tpot_p99_s", "gpus_max",
                                                             "num_requests", "message")},
                          "gpus": result.gpus, "best": result.best, "trials": list(result.trials)}))
        return 0
    rows = [{**t.__dict__, "layout": str(t.layout), "ttft_ms_p99": t.ttft_s_p99 * 1e3,
             "tpot_ms_p99": t.tpot_s_p99 * 1e3} for t in result.trials]
    if args.format == "csv":
        print(dumps_csv([t.__dict__ for t in result.trials]), end="")
        return 0
    print(f"plan: {args.model} on {args.hardware}, {args.request_rate:g} req/s, {result.num_requests} simulated "
          f"requests per layout (seed {args.seed})")
    print(table(rows, PLAN_COLUMNS))
    print()
    print(("answer: " if result.best else "") + result.message)
    return 0
