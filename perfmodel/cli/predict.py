"""``perfmodel predict``: rank every TP/PP/DP layout of N GPUs."""

from __future__ import annotations

import argparse

from perfmodel.cli.options import GPUS, add_format_argument, add_scenario_arguments, scenario_options
from perfmodel.cli.validate import integer

PREDICT_COLUMNS = (
    ("rank", "#"), ("layout", "layout"), ("gpus", "GPUs"), ("fits", "fits"), ("weights_gib_per_gpu", "weights GiB/GPU"),
    ("kv_cache_tokens", "KV tokens/replica"), ("batch_size", "batch"), ("requests_per_second", "req/s"),
    ("tokens_per_second", "tok/s"), ("output_tokens_per_second", "out tok/s"), ("elapsed_time", "elapsed s"),
    ("method", "by"), ("reason", "note"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="rank every TP/PP/DP layout of N GPUs by offline throughput")
    p.add_argument("--gpus", type=GPUS, default=16, help="GPUs to use (default: 16)")
    p.add_argument("--tensor-parallel-size", "--tp", "-tp", type=GPUS, default=None, help="pin TP")
    p.add_argument("--pipeline-parallel-size", "--pp", "-pp", type=GPUS, default=None, help="pin PP")
    p.add_argument("--simulate-top", type=integer(0, 1024), default=3, metavar="N",
                   help="simulate the N best layouts of the closed form and rank them by the simulation (default 3)")
    add_scenario_arguments(p)
    add_format_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from perfmodel.predict import min_gpus_to_fit, predict_all
    from perfmodel.report import dumps_csv, dumps_json, table
    from perfmodel.scenario import Scenario

    scenario = Scenario.from_options(scenario_options(args))
    predictions = predict_all(scenario, args.gpus, tp=args.tensor_parallel_size, pp=args.pipeline_parallel_size,
                              simulate_top=args.simulate_top)
    if args.format == "json":
        print(dumps_json({"model": scenario.model.name, "hardware": scenario.cluster.name, "gpus": args.gpus,
                          "workload": scenario.workload, "engine": scenario.engine,
                          "precision": scenario.precision, "profile": scenario.profile.name,
                          "layouts": predictions}))
        return 0
    if args.format == "csv":
        print(dumps_csv([p.__dict__ for p in predictions]), end="")
        return 0
    print(header(scenario, args.gpus))
    for note in scenario.precision.notes:
        print(f"note: {note}")
    rows = [{"rank": i if p.fits else "-", "layout": f"TP{p.tp} PP{p.pp} DP{p.dp}", **p.__dict__}
            for i, p in enumerate(predictions, 1)]
    print(table(rows, PREDICT_COLUMNS))
    if not any(p.fits for p in predictions):
        need = min_gpus_to_fit(scenario)
        hint = f"it needs at least {need} GPUs" if need else "it does not fit on any number of these GPUs"
        print(f"\nNo layout fits: {hint} (or try --quantization, a smaller --max-model-len or --max-num-seqs).")
    return 0


def header(scenario, num_gpus: int) -> str:
    """The first line of the table: what was assumed and where the coefficients come from."""
    w, e = scenario.workload, scenario.engine
    return (f"{scenario.model.name} ({scenario.model.num_params() / 1e9:.1f}B, {scenario.precision.weight_dtype}) on "
            f"{num_gpus} x {scenario.cluster.gpu.display_name} [{scenario.cluster.name}]; {w.num_prompts} prompts of "
            f"{w.input_len} in / {w.output_len} out, {scenario.batching} batching; vLLM {e.vllm_version} defaults "
            f"({e.engine_generation.upper()} engine): max_num_seqs {e.max_num_seqs}, "
            f"max_num_batched_tokens {e.max_num_batched_tokens}; coefficients: {scenario.profile.name} "
            f"({scenario.profile.status_for(scenario.cluster.gpu.name)})")
