"""A results line, parsed once: ``parse_record(mapping) -> RunRecord`` (frozen, typed, keyword-only).

The results schema (calibrate/README.md, "Record schema") is written by ``calibrate.run.worker`` (offline and
online) and ``calibrate.records.importers``; this module is its one reader. Every section becomes a dataclass:

    RunRecord(run_id, engine_id, status, error, schema_version,
              run: RunSpec(engine: EngineSpec, workload: WorkloadSpec, model: ModelRef, sweep, group),
              engine_info: EngineInfo,   # what vLLM resolved (its defaults filled in, KV cache it measured)
              measurements: Measurements,  # metrics, one naming convention: statistic last (ttft_s_mean)
              requests: RequestLog | None,  # per-request numpy arrays
              provenance: Provenance)

``None`` means "not recorded" (an imported file that does not say, a vLLM that hides it) or, in ``EngineSpec``
(``calibrate.records.engine_spec``), "vLLM's default". Keys this module does not know are ignored. A missing required key
or a value of the wrong type raises ``RecordError`` (a ``UserError``): one line naming the run and the field, e.g.
``run 36b755d87ba4ad85: metrics.elapsed_s = 'fast' is not a number``.
How a section's fields name their keys and converters: ``calibrate.records.record_fields``.

Metric names: the results file keeps vLLM's benchmark order (``mean_ttft_s``); ``Measurements`` puts the
statistic last like the simulator's ``Metrics`` (``ttft_s_mean``). The mapping is in calibrate/README.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from calibrate.records.engine_spec import EngineSpec
from calibrate.records.record_fields import (RecordError, build_section, parsed, sub_section, to_bool, to_float, to_floats,
                                     to_int, to_ints, to_mapping, to_str, to_strs)
from calibrate.records.sweep import LengthDist

SCHEMA_VERSION = 1  # the version this reader understands (calibrate.records.store.SCHEMA_VERSION writes it)
STATUSES = ("ok", "error")


# -- the sections (config.engine is calibrate.records.engine_spec.EngineSpec, read leniently) ----------------------------
def to_length(v: Any) -> int | float | LengthDist:
    """A workload length: an int, a mean (imported files), or a distribution mapping (sweep files)."""
    if isinstance(v, Mapping):
        try:
            return LengthDist(**v)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"is not a length distribution ({exc})") from None
    return to_int(v) if isinstance(v, int) else to_float(v)



@dataclass(frozen=True, kw_only=True)
class WorkloadSpec:
    """``config.workload``; lengths are an int, a mean (imported) or a ``LengthDist``."""

    input_len: int | float | LengthDist | None = parsed(to_length)
    output_len: int | float | LengthDist | None = parsed(to_length)
    num_prompts: int | None = parsed(to_int)
    request_rate: float = parsed(to_float, default=math.inf)  # requests/s; inf = all at once
    burstiness: float | None = parsed(to_float)
    max_concurrency: int | None = parsed(to_int)
    shared_prefix_len: int = parsed(to_int, default=0)  # every prompt starts with these same tokens (0: none)
    seed: int | None = parsed(to_int)


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """``model``: what the run loaded. ``spec`` falls back to ``config.engine.model``."""

    spec: str | None = parsed(to_str)
    path: str | None = parsed(to_str)  # the folder vLLM loaded (may not exist on this machine)
    config_hash: str | None = parsed(to_str)  # sha256/16 of its config.json


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """The run as it was configured."""

    engine: EngineSpec
    workload: WorkloadSpec
    model: ModelRef
    sweep: str | None = None
    group: str | None = None


@dataclass(frozen=True, kw_only=True)
class EngineInfo:
    """``engine_info``: what vLLM resolved and measured (offline: read from the engine; online: its log)."""

    max_num_seqs: int | None = parsed(to_int)
    max_num_batched_tokens: int | None = parsed(to_int)
    max_model_len: int | None = parsed(to_int)
    block_size: int | None = parsed(to_int)
    enable_chunked_prefill: bool | None = parsed(to_bool)
    enable_prefix_caching: bool | None = parsed(to_bool)
    cuda_graphs: bool | None = parsed(to_bool)
    kv_cache_tokens: int | None = parsed(to_int, "kv_cache_tokens", "gpu_kv_cache_tokens")  # the latter: older files
    num_gpu_blocks: int | None = parsed(to_int)
    kv_cache_tokens_log: int | None = parsed(to_int)  # "GPU KV cache size: N tokens"
    kv_cache_memory_bytes_log: int | None = parsed(to_int)  # "Available KV cache memory: X GiB", in bytes
    max_concurrency_log: float | None = parsed(to_float)
    num_gpu_blocks_log: int | None = parsed(to_int)  # V0's "# GPU blocks"
    max_num_batched_tokens_log: int | None = parsed(to_int)
    max_model_len_log: int | None = parsed(to_int)
    vocab_size: int | None = parsed(to_int)
    startup_s: float | None = parsed(to_float)
    warmup_s: float | None = parsed(to_float)
    server_port: int | None = parsed(to_int)
    dropped_engine_args: tuple[str, ...] = parsed(to_strs, default=())


def _metric(statistic: str, name: str) -> Any:
    return parsed(to_float, f"{statistic}_{name}_s")


@dataclass(frozen=True, kw_only=True)
class Measurements:
    """``metrics``, statistic last (the simulator's names). Seconds; rates per second; TPOT excludes the first
    token; ITL = gaps between streamed chunks; ``elapsed_s`` = wall time of the run (offline: ``generate``)."""

    elapsed_s: float | None = parsed(to_float)
    num_requests: int | None = parsed(to_int)
    num_failed_requests: int | None = parsed(to_int)
    num_input_tokens: int | None = parsed(to_int)
    num_output_tokens: int | None = parsed(to_int)
    requests_per_second: float | None = parsed(to_float)
    tokens_per_second: float | None = parsed(to_float)  # input + output
    output_tokens_per_second: float | None = parsed(to_float)
    ttft_s_mean: float | None = _metric("mean", "ttft")
    ttft_s_median: float | None = _metric("median", "ttft")
    ttft_s_p90: float | None = _metric("p90", "ttft")
    ttft_s_p99: float | None = _metric("p99", "ttft")
    tpot_s_mean: float | None = _metric("mean", "tpot")
    tpot_s_median: float | None = _metric("median", "tpot")
    tpot_s_p90: float | None = _metric("p90", "tpot")
    tpot_s_p99: float | None = _metric("p99", "tpot")
    itl_s_mean: float | None = _metric("mean", "itl")
    itl_s_median: float | None = _metric("median", "itl")
    itl_s_p90: float | None = _metric("p90", "itl")
    itl_s_p99: float | None = _metric("p99", "itl")
    e2e_s_mean: float | None = _metric("mean", "e2e")
    e2e_s_median: float | None = _metric("median", "e2e")
    e2e_s_p90: float | None = _metric("p90", "e2e")
    e2e_s_p99: float | None = _metric("p99", "e2e")
    # mean over requests of each one's decode speed after its first token (the Taiwania 2 experiment log's)
    decode_tokens_per_s_per_request_mean: float | None = parsed(to_float, "mean_decode_tokens_per_s_per_request")

    def as_dict(self) -> dict[str, float]:
        """The recorded metrics (None left out) as floats, under these names."""
        return {f.name: float(v) for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True, kw_only=True, eq=False)
class RequestLog:
    """``requests``: one entry per request, read-only numpy arrays (online runs also time each request)."""

    input_lens: np.ndarray = parsed(to_ints, required=True)  # tokens
    output_lens: np.ndarray = parsed(to_ints, required=True)  # tokens
    send_s: np.ndarray | None = parsed(to_floats, "send_s", "arrival_s")  # when each request was sent
    ttft_s: np.ndarray | None = parsed(to_floats)
    e2e_s: np.ndarray | None = parsed(to_floats)
    errors: tuple[str, ...] = parsed(to_strs, default=())

    def __len__(self) -> int:
        return len(self.input_lens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestLog):
            return NotImplemented
        return self.errors == other.errors and all(
            (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
            for a, b in ((getattr(self, n), getattr(other, n)) for n in ("input_lens", "output_lens", "send_s",
                                                                          "ttft_s", "e2e_s")))


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """``provenance`` (plus the record's ``source`` and the hardware label of ``model``/``config.engine``)."""

    source: str | None = None  # "perfmodel-calibrate" | "imported"
    hardware: str | None = None  # hardware catalog label the run was made on, e.g. "h200-sxm"
    vllm_version: str | None = parsed(to_str)
    torch_version: str | None = parsed(to_str)
    cuda_version: str | None = parsed(to_str)
    driver_version: str | None = parsed(to_str)
    gpu_name: str | None = parsed(to_str)
    gpu_count: int | None = parsed(to_int)
    gpu_memory_bytes: int | None = parsed(to_int)
    cuda_visible_devices: str | None = parsed(to_str)
    slurm_job_id: str | None = parsed(to_str)
    hostname: str | None = parsed(to_str)
    cpu_count: int | None = parsed(to_int)
    date_utc: str | None = parsed(to_str)  # ISO 8601
    python_version: str | None = parsed(to_str)
    platform: str | None = parsed(to_str)
    command: str | None = parsed(to_str)
    server_command: str | None = parsed(to_str)
    log_file: str | None = parsed(to_str)
    engine_args: Mapping[str, Any] = parsed(to_mapping, default={})  # exactly what vLLM got
    imported_from: str | None = parsed(to_str)
    imported_format: str | None = parsed(to_str)
    file_sha256: str | None = parsed(to_str)


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One results line."""

    run_id: str
    engine_id: str | None
    status: str  # "ok" | "error"
    error: str | None
    schema_version: int
    run: RunSpec
    engine_info: EngineInfo
    measurements: Measurements
    requests: RequestLog | None
    provenance: Provenance

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def mode(self) -> str:
        return self.run.engine.mode

    def request_lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(input, output) tokens per request: the recorded ones, else ``num_prompts`` of the fixed lengths."""
        if self.requests is not None and len(self.requests):
            return self.requests.input_lens, self.requests.output_lens
        w = self.run.workload
        if isinstance(w.input_len, int) and isinstance(w.output_len, int) and (w.num_prompts or 0) >= 1:
            return np.full(w.num_prompts, w.input_len), np.full(w.num_prompts, w.output_len)
        raise RecordError(f"run {self.run_id}: the record has neither per-request lengths nor fixed lengths")


# -- parsing -------------------------------------------------------------------------------------------------
def parse_record(mapping: Mapping[str, Any]) -> RunRecord:
    """Parse one results line (a JSON object already decoded); raises ``RecordError`` naming run and field."""
    if not isinstance(mapping, Mapping):
        raise RecordError(f"a results record must be a JSON object, got {type(mapping).__name__}")
    run_id = mapping.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise RecordError(f"a results record has no run_id (keys: {', '.join(sorted(mapping)[:8])})")
    top = build_section(_Top, mapping, "", run_id)
    if top.status not in STATUSES:
        raise RecordError(f"run {run_id}: status = {top.status!r} is not one of {', '.join(STATUSES)}")
    if top.schema_version != SCHEMA_VERSION:
        raise RecordError(f"run {run_id}: schema_version {top.schema_version} is not {SCHEMA_VERSION}; "
                          "upgrade perfmodel to read it")
    config = sub_section(mapping, "config", run_id)
    engine = EngineSpec.from_record(sub_section(config, "engine", run_id, "config."), run_id)
    workload = build_section(WorkloadSpec, sub_section(config, "workload", run_id, "config."),
                             "config.workload", run_id)
    model_raw = sub_section(mapping, "model", run_id)
    model = build_section(ModelRef, model_raw, "model", run_id)
    if model.spec is None and engine.model is not None:
        model = dataclasses.replace(model, spec=engine.model)
    if top.status == "ok" and not isinstance(mapping.get("metrics"), Mapping):
        raise RecordError(f"run {run_id}: metrics is missing from a successful run")
    hardware = model_raw.get("hardware") or engine.hardware
    return RunRecord(
        run_id=run_id, engine_id=top.engine_id, status=top.status, error=top.error,
        schema_version=top.schema_version,
        run=RunSpec(engine=engine, workload=workload, model=model, sweep=top.sweep, group=top.group),
        engine_info=build_section(EngineInfo, sub_section(mapping, "engine_info", run_id), "engine_info", run_id),
        measurements=build_section(Measurements, sub_section(mapping, "metrics", run_id), "metrics", run_id),
        requests=_requests(mapping, run_id),
        provenance=build_section(Provenance, sub_section(mapping, "provenance", run_id), "provenance", run_id,
                                 source=top.source, hardware=to_str(hardware) if hardware is not None else None))


@dataclass(frozen=True, kw_only=True)
class _Top:
    """The record's top-level scalars."""

    schema_version: int = parsed(to_int, required=True)
    status: str = parsed(to_str, required=True)
    engine_id: str | None = parsed(to_str)
    error: str | None = parsed(to_str)
    source: str | None = parsed(to_str)
    sweep: str | None = parsed(to_str)
    group: str | None = parsed(to_str)


def _requests(mapping: Mapping[str, Any], run_id: str) -> RequestLog | None:
    raw = sub_section(mapping, "requests", run_id)
    if not raw or raw.get("input_lens") is None:
        return None
    log = build_section(RequestLog, raw, "requests", run_id)
    n = len(log.input_lens)
    for name in ("output_lens", "send_s", "ttft_s", "e2e_s"):
        values = getattr(log, name)
        if values is not None and len(values) != n:
            raise RecordError(f"run {run_id}: requests.{name} has {len(values)} entries, input_lens {n}")
    return log
