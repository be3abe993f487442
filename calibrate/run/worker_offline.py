"""Offline measurement: one `vllm.LLM`, every workload of its engine configuration, wall-clock `generate`.

Only stable public API is used (`vllm.LLM`, `SamplingParams`, token-id prompts); engine arguments this vLLM
does not know are dropped and listed in the record (`engine_info.dropped_engine_args`).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Mapping

from calibrate.run import provenance
from calibrate.run.modeldir import with_checkpoint_quantization
from calibrate.run.worker_record import make_record, read_log, record_error, write_result

WARMUP_PROMPTS = 4
WARMUP_INPUT_LEN = 16
WARMUP_OUTPUT_LEN = 4
FIRST_TOKEN_ID = 3  # keep clear of the usual special ids 0..2


def engine_kwargs(engine: Mapping[str, Any], model_path: str) -> dict[str, Any]:
    """vLLM `LLM(...)`/EngineArgs keyword arguments for an engine configuration (None = vLLM default)."""
    kw: dict[str, Any] = {
        "model": model_path,
        "skip_tokenizer_init": True,
        "tensor_parallel_size": engine["tensor_parallel_size"],
        "pipeline_parallel_size": engine["pipeline_parallel_size"],
        "dtype": engine["dtype"],
        "max_num_seqs": engine["max_num_seqs"],
        "max_num_batched_tokens": engine["max_num_batched_tokens"],
        "gpu_memory_utilization": engine["gpu_memory_utilization"],
        "max_model_len": engine["max_model_len"],
        "enforce_eager": engine["enforce_eager"],
        "block_size": engine["block_size"],
        "kv_cache_dtype": engine["kv_cache_dtype"],
        "quantization": engine["quantization"],
        "enable_prefix_caching": engine["enable_prefix_caching"],
        "distributed_executor_backend": engine["distributed_executor_backend"],
        "seed": engine["seed"],
    }
    if engine["dummy_weights"]:
        kw["load_format"] = "dummy"
    dcar = engine["disable_custom_all_reduce"]
    if dcar is None:
        dcar = engine["tensor_parallel_size"] > 1
    if dcar:
        kw["disable_custom_all_reduce"] = True
    kw.update(engine.get("extra_engine_args") or {})
    return {k: v for k, v in kw.items() if v is not None}


def supported_engine_args() -> set[str] | None:
    """Field names of this vLLM's EngineArgs (None when they cannot be read: pass everything)."""
    try:
        from vllm.engine.arg_utils import EngineArgs

        return {f.name for f in dataclasses.fields(EngineArgs)}
    except Exception:  # noqa: BLE001
        return None


def make_sampling_params(sp_cls, output_len: int):
    """Exactly `output_len` tokens, greedy, no detokenization; keyword arguments this vLLM lacks are dropped."""
    kw = {"max_tokens": output_len, "min_tokens": output_len, "ignore_eos": True, "detokenize": False,
          "temperature": 0.0}
    for drop in (None, "detokenize", "min_tokens"):
        if drop:
            kw.pop(drop)
        try:
            return sp_cls(**kw)
        except TypeError:
            continue
    return sp_cls(max_tokens=output_len, ignore_eos=True)


def make_prompts(workload: Mapping[str, Any], vocab_size: int, run_id: str) -> tuple[list[list[int]], list[int]]:
    """Random token ids (< vocab_size) for each request, and each request's output length.

    With `shared_prefix_len` K > 0 every prompt is the same K random ids followed by its own random ids; the
    prefix is drawn from its own stream (seed, 3, run) so two workloads of one engine never share a prefix.
    """
    import numpy as np

    from calibrate.records.sweep import LengthDist, Workload

    w = dict(workload)
    for k in ("input_len", "output_len"):
        if isinstance(w[k], dict):
            w[k] = LengthDist(**w[k])
    w["request_rate"] = float(w["request_rate"])
    wl = Workload(**w)
    input_lens, output_lens = wl.lengths()
    run_key = int(run_id, 16) % (2**32)
    rng = np.random.default_rng([wl.seed, 2, run_key])
    hi = max(vocab_size, FIRST_TOKEN_ID + 1)
    k = wl.shared_prefix_len
    prefix = np.random.default_rng([wl.seed, 3, run_key]).integers(FIRST_TOKEN_ID, hi, size=k).tolist()
    prompts = [prefix + rng.integers(FIRST_TOKEN_ID, hi, size=n - k).tolist() for n in input_lens]
    return prompts, output_lens


def engine_facts(llm) -> dict[str, Any]:
    """KV cache and scheduler facts read from the engine object (None where this vLLM hides them)."""
    eng = getattr(llm, "llm_engine", None)
    cfg = getattr(eng, "vllm_config", None)
    cache = getattr(cfg, "cache_config", None) or getattr(eng, "cache_config", None)
    sched = getattr(cfg, "scheduler_config", None) or getattr(eng, "scheduler_config", None)
    model = getattr(cfg, "model_config", None) or getattr(eng, "model_config", None)
    blocks = getattr(cache, "num_gpu_blocks", None)
    block_size = getattr(cache, "block_size", None)
    kv_tokens = getattr(cache, "kv_cache_size_tokens", None)
    if kv_tokens is None and blocks and block_size:
        kv_tokens = int(blocks) * int(block_size)
    enforce_eager = getattr(model, "enforce_eager", None)
    return {
        "num_gpu_blocks": blocks,
        "block_size": block_size,
        "kv_cache_tokens": kv_tokens,
        "max_num_batched_tokens": getattr(sched, "max_num_batched_tokens", None),
        "max_num_seqs": getattr(sched, "max_num_seqs", None),
        "max_model_len": getattr(model, "max_model_len", None),
        "enable_chunked_prefill": _first_attr(sched, "enable_chunked_prefill", "chunked_prefill_enabled"),
        "enable_prefix_caching": getattr(cache, "enable_prefix_caching", None),
        "cuda_graphs": (not enforce_eager) if enforce_eager is not None else None,
        "vocab_size": _vocab_size(model),
    }


def _first_attr(obj, *names: str) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _vocab_size(model_config) -> int | None:
    try:
        return int(model_config.get_vocab_size())
    except Exception:  # noqa: BLE001
        return None


def run_offline(spec: Mapping[str, Any], env: dict[str, Any]) -> None:
    from vllm import LLM, SamplingParams

    engine = spec["engine"]
    model_path, quant_config = with_checkpoint_quantization(spec["model_path"], engine["quantization"])
    kwargs = engine_kwargs(engine, model_path)
    supported = supported_engine_args()
    dropped = sorted(k for k in kwargs if supported is not None and k not in supported and k != "model")
    kwargs = {k: v for k, v in kwargs.items() if k not in dropped}
    env["engine_args"] = kwargs
    print(f"[calibrate.run.worker] LLM({kwargs})", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        llm = LLM(**kwargs)
    except NotImplementedError as exc:
        if engine["pipeline_parallel_size"] > 1:
            raise NotImplementedError(f"this vLLM's offline LLM class has no pipeline parallelism ({exc}); "
                                      "measure it with mode: online and request_rate: inf") from exc
        raise
    startup_s = time.perf_counter() - t0
    info = {**engine_facts(llm), **provenance.parse_engine_log(read_log(spec)), "startup_s": startup_s,
            "dropped_engine_args": dropped, "checkpoint_quantization_config": quant_config}
    if info["cuda_graphs"] is not None and env.get("gpu_count", 0) == 0:
        info["cuda_graphs"] = False  # no GPU, no CUDA graphs
    vocab = info["vocab_size"] or spec.get("vocab_size") or 32000
    warm = [{"prompt_token_ids": [FIRST_TOKEN_ID] * WARMUP_INPUT_LEN}] * min(
        WARMUP_PROMPTS, engine.get("max_num_seqs") or WARMUP_PROMPTS)
    t0 = time.perf_counter()
    llm.generate(warm, make_sampling_params(SamplingParams, WARMUP_OUTPUT_LEN), use_tqdm=False)
    info["warmup_s"] = time.perf_counter() - t0
    for run in spec["runs"]:
        try:
            metrics, requests = _measure(llm, SamplingParams, run, vocab)
        except Exception as exc:  # noqa: BLE001 - one failed workload is recorded; the others still run
            record_error(spec, run, env, info, exc)
            continue
        write_result(spec, make_record(spec=spec, run=run, status="ok", metrics=metrics, engine_info=info,
                                       env=env, requests=requests))


def _measure(llm, sp_cls, run: Mapping[str, Any], vocab: int) -> tuple[dict[str, Any], dict[str, list]]:
    prompts, output_lens = make_prompts(run["workload"], vocab, run["run_id"])
    inputs = [{"prompt_token_ids": p} for p in prompts]
    if len(set(output_lens)) == 1:
        params: Any = make_sampling_params(sp_cls, output_lens[0])
    else:
        params = [make_sampling_params(sp_cls, n) for n in output_lens]
    t0 = time.perf_counter()
    outputs = llm.generate(inputs, params, use_tqdm=False)
    elapsed_s = time.perf_counter() - t0
    in_lens = [len(o.prompt_token_ids) for o in outputs]
    out_lens = [sum(len(c.token_ids) for c in o.outputs) for o in outputs]
    n_in, n_out = sum(in_lens), sum(out_lens)
    metrics = {
        "elapsed_s": elapsed_s,
        "num_requests": len(outputs),
        "num_input_tokens": n_in,
        "num_output_tokens": n_out,
        "requests_per_second": len(outputs) / elapsed_s,
        "tokens_per_second": (n_in + n_out) / elapsed_s,
        "output_tokens_per_second": n_out / elapsed_s,
    }
    return metrics, {"input_lens": in_lens, "output_lens": out_lens}

