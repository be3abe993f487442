"""Flags -> one frozen ``ScenarioOptions``: the only place the CLI turns what a user typed into a scenario.

Every command (predict, simulate, compare, plan) adds its flags here and reads them back through
``scenario_options``, so a flag is honoured by all of them or by none. Flags carry vLLM's names; choices come
from the library's own lists. Nothing heavy is imported at module level: ``perfmodel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from perfmodel.cli.validate import (MAX_GPUS, MAX_NUM_PROMPTS, MAX_NUM_SEQS, MAX_SEED, MAX_SPREAD, MAX_TOKENS,
                                    input_file, integer, name_or_file, real)
from perfmodel.model.precision import DTYPE_CHOICES, KV_CACHE_DTYPE_CHOICES, QUANTIZATION_CHOICES
from perfmodel.analysis.report import FORMATS
from perfmodel.scenario_options import BATCHING, DISTRIBUTIONS, ScenarioOptions

TRACE_FORMATS = ("auto", "perfmodel", "azure", "burstgpt")
"""simulator.traces.FORMATS, written out: importing the simulator would load numpy for ``--help``."""

ROUTERS = ("round_robin", "least_loaded", "random")
# the validators of flags that several commands share (perfmodel.cli.validate; calibrate's CLI uses them too)
MODEL = name_or_file("json", (".json",))
HARDWARE = name_or_file("yaml", (".yaml", ".yml"))
TOKENS = integer(1, MAX_TOKENS)
PROMPTS = integer(1, MAX_NUM_PROMPTS)
GPUS = integer(1, MAX_GPUS)
SEED = integer(0, MAX_SEED)
SPREAD = real(0, MAX_SPREAD)
BURSTINESS = real(0, 1e6, low_open=True)
# below one request a day the arrival times dwarf every step (1e-300 req/s printed latencies of 0): refused
MIN_REQUEST_RATE = 1e-5
_ENGINE_FLAGS = ("max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization", "max_model_len", "block_size",
                 "enforce_eager", "enable_chunked_prefill", "enable_prefix_caching", "vllm_version")


def _size(text: str) -> int:
    """A token count as vLLM spells sizes (4096, 32k, 32K) within perfmodel's limits."""
    from perfmodel.cli.vllm_flags import human_readable_int

    return TOKENS(str(human_readable_int(text)))


def vllm_version(text: str) -> str:
    """A release perfmodel knows the defaults of (perfmodel.engine.releases.release_problem)."""
    from perfmodel.engine.releases import release_problem

    problem = release_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_scenario_arguments(parser: argparse.ArgumentParser, *, workload: bool = True) -> None:
    """Model, hardware, precision and engine flags (and, with ``workload``, the offline workload's)."""
    g = parser.add_argument_group("model and hardware")
    g.add_argument("--model", "-m", default="llama-3.1-70b", type=MODEL,
                   help="catalog name, HF id, model directory or config.json (default: llama-3.1-70b)")
    g.add_argument("--hardware", default="taiwania2", type=HARDWARE,
                   help="GPU name (one node of it), cluster name or YAML path (default: taiwania2)")
    g.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES)
    g.add_argument("--quantization", "-q", default=None, choices=QUANTIZATION_CHOICES)
    g.add_argument("--kv-cache-dtype", default="auto", choices=KV_CACHE_DTYPE_CHOICES)
    g.add_argument("--calibration", default=None, type=input_file("yaml"),
                   help="calibration profile YAML (default: the profile shipped for the GPU, if any)")
    g.add_argument("--nodes", type=integer(1, MAX_GPUS), default=None, metavar="N",
                   help="N nodes of the hardware for the job (its YAML must declare inter_node_link; "
                        "default: the hardware's own node count)")
    g.add_argument("--tp-across-nodes", action=argparse.BooleanOptionalAction, default=None,
                   help="let one TP group span nodes (default: no with --nodes; PP and DP may always cross nodes)")
    g.add_argument("--enable-expert-parallel", "-ep", dest="expert_parallel", action="store_true", default=False,
                   help="MoE models: split the experts over TP x DP GPUs (EP = TP x DP) as vLLM's flag does")
    e = parser.add_argument_group("engine (vLLM's defaults when omitted)")
    e.add_argument("--vllm-version", default=None, type=vllm_version,
                   help="vLLM release whose defaults to assume (default: 0.26; Taiwania 2 runs 0.7.0)")
    e.add_argument("--max-num-seqs", type=integer(1, MAX_NUM_SEQS), default=None)
    e.add_argument("--max-num-batched-tokens", type=_size, default=None, help="tokens per step (4096, 8k, 8K)")
    e.add_argument("--gpu-memory-utilization", type=real(0, 1, low_open=True), default=None)
    e.add_argument("--max-model-len", type=_size, default=None, help="context limit (32768, 32k = 32000, 32K)")
    e.add_argument("--block-size", type=integer(1, 1024), default=None)
    e.add_argument("--enforce-eager", action="store_true", default=None,
                   help="no CUDA graphs (adds a per-layer launch cost; frees graph memory)")
    e.add_argument("--enable-chunked-prefill", action=argparse.BooleanOptionalAction, default=None,
                   help="split prompts across steps (default: the release's; V0 turns it on only past 32k context)")
    e.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=None,
                   help="simulator: requests after the first reuse the KV of a shared prompt prefix "
                        "(--shared-prefix-len; V1 continuous batching only); the closed form ignores it "
                        "(default: off)")
    from perfmodel.cli.vllm_flags import add_ignored_arguments

    add_ignored_arguments(parser)
    if workload:
        w = parser.add_argument_group("workload (offline: all prompts at once)")
        w.add_argument("--input-len", type=TOKENS, default=100)
        w.add_argument("--output-len", type=TOKENS, default=600)
        w.add_argument("--num-prompts", type=PROMPTS, default=300)
        w.add_argument("--batching", default="continuous", choices=BATCHING)
        w.add_argument("--static-batch-size", type=integer(1, MAX_NUM_SEQS), default=None,
                       help="static batching: requests per batch (default: what memory and --max-num-seqs allow)")


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="table", choices=FORMATS, help="output format (default: table)")


def add_layout_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("layout")
    g.add_argument("--tensor-parallel-size", "--tp", "-tp", type=GPUS, default=1)
    g.add_argument("--pipeline-parallel-size", "--pp", "-pp", type=GPUS, default=1)
    g.add_argument("--data-parallel-size", "--dp", "-dp", type=GPUS, default=1, help="replicas behind the router")
    g.add_argument("--router", default="round_robin", choices=ROUTERS)


def add_length_arguments(g, *, num_prompts_default: int | None = 300) -> None:
    g.add_argument("--input-len", type=TOKENS, default=100, help="prompt tokens (mean; default 100)")
    g.add_argument("--output-len", type=TOKENS, default=600, help="output tokens (mean; default 600)")
    g.add_argument("--input-dist", default="fixed", choices=DISTRIBUTIONS)
    g.add_argument("--output-dist", default="fixed", choices=DISTRIBUTIONS)
    spread = ("spread (default 0.5): lognormal sigma of log; normal std/mean; uniform half-width/mean "
              "(vLLM's --random-range-ratio)")
    g.add_argument("--input-sigma", type=SPREAD, default=None, help=f"input {spread}")
    g.add_argument("--output-sigma", type=SPREAD, default=None, help=f"output {spread}")
    g.add_argument("--num-prompts", type=PROMPTS, default=num_prompts_default,
                   help="requests" + (" (default: max(200, 60 s x rate), at most 3000)"
                                      if num_prompts_default is None else f" (default {num_prompts_default})"))


def add_workload_arguments(parser: argparse.ArgumentParser, *, batching: bool) -> None:
    """A simulated workload: lengths, arrivals (vLLM benchmark names), trace, batching."""
    g = parser.add_argument_group("workload (vLLM benchmark names)")
    add_length_arguments(g)
    g.add_argument("--request-rate", type=real(MIN_REQUEST_RATE, allow_inf=True), default=math.inf,
                   help=f"requests/s, at least {MIN_REQUEST_RATE:g} (default inf: all at t=0, offline)")
    g.add_argument("--burstiness", type=BURSTINESS, default=1.0, help="gamma shape of the gaps (1 = Poisson)")
    g.add_argument("--max-concurrency", type=PROMPTS, default=None, help="most requests outstanding (closed loop)")
    g.add_argument("--seed", type=SEED, default=0)
    g.add_argument("--shared-prefix-len", type=integer(0, 10**9), default=0, metavar="K",
                   help="every prompt starts with the same K tokens (K below every prompt's length; default 0); "
                        "their KV is reused with --enable-prefix-caching")
    g.add_argument("--trace", metavar="FILE", type=input_file("trace"),
                   help="CSV/JSONL trace of arrival_s, input and output lengths, or an Azure LLM inference / "
                        "BurstGPT trace CSV (see --trace-format)")
    g.add_argument("--trace-format", default="auto", choices=TRACE_FORMATS,
                   help="the trace's columns (default auto: told by its header; see simulator/traces.py)")
    g.add_argument("--trace-start", type=real(0), default=0.0, metavar="S",
                   help="keep the trace's requests from S seconds after its first one (default 0)")
    g.add_argument("--trace-duration", type=real(0, low_open=True, allow_inf=True), default=math.inf, metavar="S",
                   help="... for S seconds (default: to the end)")
    if batching:
        g.add_argument("--batching", default="continuous", choices=BATCHING)
    g.add_argument("--static-batch-size", type=integer(1, MAX_NUM_SEQS), default=None,
                   help="static batching: requests per batch (default: --max-num-seqs)")


def add_offload_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("KV offload (PipeMax-style; needs PP >= 2)")
    g.add_argument("--kv-offload", action="store_true",
                   help="keep idle pipeline micro-batches' KV in host memory, copied over PCIe")
    g.add_argument("--kv-offload-host-fraction", type=real(0, 1, low_open=True), default=0.5,
                   help="fraction of a node's host memory for offloaded KV, shared by its GPUs (default 0.5)")


def scenario_options(args: argparse.Namespace, **overrides: Any) -> ScenarioOptions:
    """The ``ScenarioOptions`` of the parsed flags; ``overrides`` are a command's own (entry point, ...)."""
    values: dict[str, Any] = {k: getattr(args, k) for k in ("model", "hardware", "quantization", "kv_cache_dtype",
                                                            "calibration")}
    values["dtype"] = "float16" if args.dtype == "half" else args.dtype
    values.update({k: getattr(args, k) for k in _ENGINE_FLAGS if getattr(args, k, None) is not None})
    for name in ("input_len", "output_len", "num_prompts", "batching", "static_batch_size", "kv_offload",
                 "kv_offload_host_fraction", "nodes", "tp_across_nodes"):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    if getattr(args, "expert_parallel", False):
        values["expert_parallel"] = True
    values.update(overrides)
    return ScenarioOptions(**values)


def is_online(args: argparse.Namespace) -> bool:
    """Requests arrive over time (a rate, a trace or a closed loop): vLLM's server defaults apply."""
    return args.trace is not None or not math.isinf(args.request_rate) or args.max_concurrency is not None


def lengths(args: argparse.Namespace):
    """The input and output length distributions of the flags."""
    from perfmodel.analysis.simulate import length_distribution

    return (length_distribution(args.input_dist, args.input_len, args.input_sigma, flag="--input"),
            length_distribution(args.output_dist, args.output_len, args.output_sigma, flag="--output"))
