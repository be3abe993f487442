"""What a results record must hold beyond its types: the one check ``calibrate import`` runs on every record it
writes and ``calibrate fit|check`` run on every record they read, so a record import accepts is one fit can use.

``record_problem(raw) -> str | None`` parses the record (``calibrate.records.record.parse_record``: types) and then
checks, for a record with status "ok":

- numbers are finite and in range: elapsed > 0 s; counts, tokens, throughputs and latencies >= 0 and below
  physical bounds (``MAX_*``); request rate, burstiness > 0;
- consistency: completed requests <= prompts sent, failed <= prompts;
- something to fit: elapsed time or a throughput;
- engine facts: a model is named; TP and PP >= 1; TP divides the model's attention heads when the model resolves
  here (vLLM 0.7.0 vllm/config.py ModelConfig.verify_with_parallel_config raises otherwise, so such a run never
  ran); gpu_memory_utilization in (0, 1].

Errors are one line naming the field; callers add the file and the line.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

MAX_COUNT = 10**9  # requests or prompts in one run
MAX_TOKENS = 10**13  # tokens of one run (10^9 requests x 10^4 tokens)
MAX_RATE = 1e12  # tokens or requests per second (no engine approaches this)
MAX_TIME_S = 1e8  # seconds: a run, or one request's latency (~3 years)
MAX_GPUS = 65_536


def record_problem(raw: Mapping[str, Any]) -> str | None:
    """None when the record can be used, else one line saying which field is wrong."""
    from calibrate.records.record_fields import RecordError
    from calibrate.records.record import parse_record

    if not isinstance(raw, Mapping):
        return f"a record is a JSON object, got {type(raw).__name__}"
    try:
        rec = parse_record(raw)
    except RecordError as exc:
        return str(exc)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        return f"does not follow the results schema (calibrate/README.md): {exc}"
    problems = _engine_problems(rec.run.engine, rec.run.model)
    if rec.status == "ok":
        problems += _workload_problems(rec.run.workload) + _metric_problems(rec.measurements, rec.run.workload)
    return problems[0] if problems else None


def _engine_problems(engine, model_ref) -> list[str]:
    model = engine.model or model_ref.spec
    out = []
    if not isinstance(model, str) or not model.strip():
        out.append("config.engine.model is missing: say which model ran (--model)")
    for name in ("tensor_parallel_size", "pipeline_parallel_size"):
        value = getattr(engine, name)
        if not 1 <= value <= MAX_GPUS:
            out.append(f"config.engine.{name} = {value} must be from 1 to {MAX_GPUS:,}")
    for name in ("max_num_seqs", "max_num_batched_tokens", "max_model_len", "block_size"):
        value = getattr(engine, name)
        if value is not None and not 1 <= value <= MAX_TOKENS:
            out.append(f"config.engine.{name} = {value} must be from 1 to {MAX_TOKENS:,}")
    util = engine.gpu_memory_utilization
    if util is not None and not (math.isfinite(util) and 0 < util <= 1):
        out.append(f"config.engine.gpu_memory_utilization = {util} must be in (0, 1]")
    if not out and isinstance(model, str):
        heads = _attention_heads(model.strip())
        if heads is not None and heads % engine.tensor_parallel_size:
            out.append(f"tensor_parallel_size {engine.tensor_parallel_size} does not divide {model}'s {heads} "
                       "attention heads: vLLM refuses to start such an engine")
    return out


@functools.lru_cache(maxsize=256)
def _attention_heads(model: str) -> int | None:
    """The model's attention heads when it resolves here (catalog, folder, HF cache); None when it does not."""
    from perfmodel.errors import UserError
    from perfmodel.model.shape import load_model

    try:
        return load_model(model).num_attention_heads
    except (UserError, OSError, ValueError):
        return None


def _workload_problems(w) -> list[str]:
    out = []
    for name in ("input_len", "output_len"):
        value = getattr(w, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
                math.isfinite(value) and 0 <= value <= MAX_TOKENS):
            out.append(f"config.workload.{name} = {value} must be from 0 to {MAX_TOKENS:,}")
    if w.num_prompts is not None and not 0 <= w.num_prompts <= MAX_COUNT:
        out.append(f"config.workload.num_prompts = {w.num_prompts} must be from 0 to {MAX_COUNT:,}")
    if not (w.request_rate > 0):  # inf: all at once; NaN fails too
        out.append(f"config.workload.request_rate = {w.request_rate} must be > 0 (or \"inf\")")
    if w.burstiness is not None and not (math.isfinite(w.burstiness) and w.burstiness > 0):
        out.append(f"config.workload.burstiness = {w.burstiness} must be a finite number > 0")
    if w.max_concurrency is not None and not 1 <= w.max_concurrency <= MAX_COUNT:
        out.append(f"config.workload.max_concurrency = {w.max_concurrency} must be from 1 to {MAX_COUNT:,}")
    return out


_COUNTS = {"num_requests": MAX_COUNT, "num_failed_requests": MAX_COUNT, "num_input_tokens": MAX_TOKENS,
           "num_output_tokens": MAX_TOKENS}


def _metric_problems(m, w) -> list[str]:
    out = []
    for name, value in m.as_dict().items():
        limit = _COUNTS.get(name) or (MAX_RATE if "per_s" in name or "per_second" in name else MAX_TIME_S)
        if not (math.isfinite(value) and 0 <= value <= limit):
            out.append(f"metrics.{_raw_name(name)} = {value} must be a finite number from 0 to {limit:g}")
    if m.elapsed_s is not None and not m.elapsed_s > 0:
        out.append(f"metrics.elapsed_s = {m.elapsed_s} must be > 0")
    sent = w.num_prompts
    if sent is not None and m.num_requests is not None and m.num_requests > sent:
        out.append(f"metrics.num_requests = {m.num_requests} completed exceeds the {sent} prompts sent")
    if sent is not None and m.num_failed_requests is not None and m.num_failed_requests > sent:
        out.append(f"metrics.num_failed_requests = {m.num_failed_requests} exceeds the {sent} prompts sent")
    if m.elapsed_s is None and not any(getattr(m, f) for f in ("requests_per_second", "tokens_per_second",
                                                               "output_tokens_per_second")):
        out.append("metrics: neither elapsed_s nor a throughput: nothing to fit")
    return out


def _raw_name(name: str) -> str:
    """``ttft_s_mean`` -> ``mean_ttft_s`` (the results file's spelling); others unchanged."""
    for stat in ("mean", "median", "p90", "p99"):
        if name.endswith(f"_s_{stat}"):
            return f"{stat}_{name[:-len(stat) - 1]}"
    return name


def check_records(records, where: str, error: type[Exception]) -> None:
    """Raise ``error`` (one line: ``where``, the record's number, the problem) at the first unusable record."""
    for i, rec in enumerate(records, 1):
        problem = record_problem(rec)
        if problem:
            raise error(f"{where}: record {i}: {problem}")


def planned_engine_problem(model: str, tensor_parallel_size: int, base_dir=None) -> str | None:
    """``calibrate run --dry-run``: None when the model resolves here and TP divides its heads, else one line
    (a dry run lists only what would start)."""
    from pathlib import Path

    from perfmodel.errors import UserError
    from perfmodel.model.shape import load_model

    local = Path(base_dir) / model if base_dir is not None else None
    try:
        shape = load_model(local if local is not None and local.exists() else model)
    except UserError as exc:
        return str(exc)
    if shape.num_attention_heads % tensor_parallel_size:
        return (f"{model}: tensor_parallel_size {tensor_parallel_size} does not divide its "
                f"{shape.num_attention_heads} attention heads: vLLM refuses to start such an engine")
    return None
