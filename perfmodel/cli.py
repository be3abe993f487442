"""``perfmodel``: the command line, a thin layer over the Python API. Flags are named as vLLM names them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from perfmodel.errors import UserError
from perfmodel.report import FORMATS, dumps_csv, dumps_json, table

PREDICT_COLUMNS = (
    ("rank", "#"), ("layout", "layout"), ("gpus", "GPUs"), ("fits", "fits"), ("weights_gib_per_gpu", "weights GiB/GPU"),
    ("kv_cache_tokens", "KV tokens/replica"), ("batch_size", "batch"), ("requests_per_second", "req/s"),
    ("tokens_per_second", "tok/s"), ("output_tokens_per_second", "out tok/s"), ("elapsed_time", "elapsed s"),
    ("method", "by"), ("reason", "note"),
)


def add_scenario_arguments(parser: argparse.ArgumentParser, *, workload: bool = True) -> None:
    """Model, hardware, precision and engine flags shared by predict, simulate, compare and plan."""
    g = parser.add_argument_group("model and hardware")
    g.add_argument("--model", "-m", default="llama-3.1-70b",
                   help="catalog name, HF id, model directory or config.json (default: llama-3.1-70b)")
    g.add_argument("--hardware", default="taiwania2",
                   help="GPU name (one node of it), cluster name or YAML path (default: taiwania2)")
    g.add_argument("--dtype", default="auto", choices=("auto", "float16", "bfloat16", "half"))
    g.add_argument("--quantization", "-q", default=None, choices=("gptq", "awq", "fp8", "int8"))
    g.add_argument("--kv-cache-dtype", default="auto", choices=("auto", "fp8"))
    g.add_argument("--calibration", default=None,
                   help="calibration profile YAML (default: the profile shipped for the GPU, if any)")
    e = parser.add_argument_group("engine (vLLM's defaults when omitted)")
    e.add_argument("--vllm-version", default=None,
                   help="vLLM release whose defaults to assume (default: 0.26; Taiwania 2 runs 0.7.0)")
    e.add_argument("--max-num-seqs", type=int, default=None)
    e.add_argument("--max-num-batched-tokens", type=int, default=None)
    e.add_argument("--gpu-memory-utilization", type=float, default=None)
    e.add_argument("--max-model-len", type=int, default=None)
    e.add_argument("--block-size", type=int, default=None)
    e.add_argument("--enforce-eager", action="store_true", default=None,
                   help="no CUDA graphs (adds a per-layer launch cost; frees graph memory)")
    if workload:
        w = parser.add_argument_group("workload (offline: all prompts at once)")
        w.add_argument("--input-len", type=int, default=100)
        w.add_argument("--output-len", type=int, default=600)
        w.add_argument("--num-prompts", type=int, default=300)
        w.add_argument("--batching", default="continuous", choices=("continuous", "static"))
        w.add_argument("--static-batch-size", type=int, default=None,
                       help="static batching: requests per batch (default: what memory and --max-num-seqs allow)")


def build_scenario(args: argparse.Namespace, **extra):
    from perfmodel.predict import Scenario

    dtype = "float16" if args.dtype == "half" else args.dtype
    workload = {k: getattr(args, k) for k in ("input_len", "output_len", "num_prompts", "batching",
                                              "static_batch_size") if hasattr(args, k)}
    engine = {k: getattr(args, k) for k in ("max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
                                            "max_model_len", "block_size", "enforce_eager")}
    if args.vllm_version:
        engine["vllm_version"] = args.vllm_version
    return Scenario.build(model=args.model, hardware=args.hardware, dtype=dtype, quantization=args.quantization,
                          kv_cache_dtype=args.kv_cache_dtype, calibration=args.calibration, **workload, **engine,
                          **extra)


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="table", choices=FORMATS, help="output format (default: table)")


# -- predict ---------------------------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from perfmodel.predict import min_gpus_to_fit, predict_all

    scenario = build_scenario(args)
    predictions = predict_all(scenario, args.gpus, tp=args.tensor_parallel_size, pp=args.pipeline_parallel_size,
                              simulate_top=args.simulate_top)
    rows = []
    for i, p in enumerate(predictions, 1):
        row = {"rank": i if p.fits else "-", "layout": f"TP{p.tp} PP{p.pp} DP{p.dp}", **p.__dict__}
        rows.append(row)
    if args.format == "json":
        print(dumps_json({"model": scenario.model.name, "hardware": scenario.cluster.name, "gpus": args.gpus,
                          "workload": scenario.workload, "engine": scenario.engine,
                          "precision": scenario.precision, "profile": scenario.profile.name,
                          "layouts": predictions}))
        return 0
    if args.format == "csv":
        print(dumps_csv([p.__dict__ for p in predictions]), end="")
        return 0
    w, e = scenario.workload, scenario.engine
    print(f"{scenario.model.name} ({scenario.model.num_params() / 1e9:.1f}B, {scenario.precision.weight_dtype}) on "
          f"{args.gpus} x {scenario.cluster.gpu.display_name} [{scenario.cluster.name}]; {w.num_prompts} prompts of "
          f"{w.input_len} in / {w.output_len} out, {scenario.batching} batching, max_num_seqs {e.max_num_seqs}, "
          f"max_num_batched_tokens {e.max_num_batched_tokens}; coefficients: {scenario.profile.name} "
          f"({scenario.profile.status_for(scenario.cluster.gpu.name)})")
    for note in scenario.precision.notes:
        print(f"note: {note}")
    print(table(rows, PREDICT_COLUMNS))
    if not any(p.fits for p in predictions):
        need = min_gpus_to_fit(scenario)
        hint = f"it needs at least {need} GPUs" if need else "it does not fit on any number of these GPUs"
        print(f"\nNo layout fits: {hint} (or try --quantization, a smaller --max-model-len or --max-num-seqs).")
    return 0


# -- hardware and models ---------------------------------------------------------------------------------------
def cmd_hardware_list(args: argparse.Namespace) -> int:
    from hardware import list_clusters, list_gpus, load_gpu, load_hardware

    rows = [{"name": n, "kind": "gpu", "description": load_gpu(n).display_name} for n in list_gpus()]
    rows += [{"name": n, "kind": "cluster", "description": load_hardware(n).display_name} for n in list_clusters()]
    print(table(rows, (("name", "name"), ("kind", "kind"), ("description", "description"))))
    return 0


def cmd_hardware_show(args: argparse.Namespace) -> int:
    from hardware import load_hardware

    print(dumps_json(load_hardware(args.name)))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from perfmodel.model import list_models, load_model

    rows = []
    for name in list_models():
        m = load_model(name)
        rows.append({"name": name, "params_b": m.num_params() / 1e9, "layers": m.num_layers, "hidden": m.hidden_size,
                     "heads": m.num_attention_heads, "kv_heads": m.num_kv_heads, "experts": m.num_experts})
    print(table(rows, (("name", "name"), ("params_b", "params (B)"), ("layers", "layers"), ("hidden", "hidden"),
                       ("heads", "heads"), ("kv_heads", "KV heads"), ("experts", "experts"))))
    return 0


# -- the parser ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfmodel", description=(
        "Predict vLLM inference throughput, latency and memory on GPU clusters; calibrate against real runs."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="rank every TP/PP/DP layout of N GPUs by offline throughput")
    p.add_argument("--gpus", type=int, default=16, help="GPUs to use (default: 16)")
    p.add_argument("--tensor-parallel-size", "--tp", "-tp", type=int, default=None, help="pin TP")
    p.add_argument("--pipeline-parallel-size", "--pp", "-pp", type=int, default=None, help="pin PP")
    p.add_argument("--simulate-top", type=int, default=3, metavar="N",
                   help="simulate the N best layouts of the closed form and rank them by the simulation (default 3)")
    add_scenario_arguments(p)
    add_format_argument(p)
    p.set_defaults(handler=cmd_predict)

    h = sub.add_parser("hardware", help="the hardware catalog").add_subparsers(dest="action", required=True)
    h.add_parser("list", help="GPUs and clusters").set_defaults(handler=cmd_hardware_list)
    show = h.add_parser("show", help="one GPU or cluster, as JSON")
    show.add_argument("name")
    show.set_defaults(handler=cmd_hardware_show)

    m = sub.add_parser("models", help="the model catalog").add_subparsers(dest="action", required=True)
    m.add_parser("list", help="catalog models and their shapes").set_defaults(handler=cmd_models_list)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommands defined next to the code they drive (simulation, calibration)."""
    from perfmodel.cli_sim import register as register_sim

    return [register_sim, _register_calibrate]


def _register_calibrate(sub: argparse._SubParsersAction) -> None:
    from calibrate.cli import add_calibrate_subcommands

    add_calibrate_subcommands(sub)


def user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UserError]
    try:
        from hardware import HardwareError
        errors.append(HardwareError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except user_errors() as exc:
        print(f"perfmodel: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("perfmodel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
