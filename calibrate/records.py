"""A results line, parsed once: ``parse_record(mapping) -> RunRecord`` (frozen, typed, keyword-only).

The results schema (calibrate/README.md, "Record schema") is written by ``calibrate.worker`` (offline and
online) and ``calibrate.importers``; this module is its one reader. Every section becomes a dataclass:

    RunRecord(run_id, engine_id, status, error, schema_version,
              run: RunSpec(engine: EngineSpec, workload: WorkloadSpec, model: ModelRef, sweep, group),
              engine_info: EngineInfo,   # what vLLM resolved (its defaults filled in, KV cache it measured)
              measurements: Measurements,  # metrics, one naming convention: statistic last (ttft_s_mean)
              requests: RequestLog | None,  # per-request numpy arrays
              provenance: Provenance)

``None`` means "not recorded" (an imported file that does not say, a vLLM that hides it) or, in ``EngineSpec``,
"vLLM's default". Keys this module does not know are ignored. A missing required key or a value of the wrong
type raises ``RecordError`` (a ``UserError``): one line naming the run and the field, e.g.
``run 36b755d87ba4ad85: metrics.elapsed_s = 'fast' is not a number``.

Metric names: the results file keeps vLLM's benchmark order (``mean_ttft_s``); ``Measurements`` puts the
statistic last like the simulator's ``Metrics`` (``ttft_s_mean``). The mapping is in calibrate/README.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from calibrate.sweep import LengthDist
from perfmodel.errors import UserError

SCHEMA_VERSION = 1  # the version this reader understands (calibrate.store.SCHEMA_VERSION writes it)
STATUSES = ("ok", "error")
STATISTICS = ("mean", "median", "p90", "p99")
LATENCIES = ("ttft", "tpot", "itl", "e2e")


class RecordError(UserError):
    """A results record lacks a field or holds a value of the wrong type (one line, naming run and field)."""


# -- converters: raw JSON value -> typed value; ValueError("is not ...") on a bad value ------------------------
def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise ValueError("is not an integer")
    return int(v)


def _float(v: Any) -> float:
    """Numbers, and the strings JSON cannot hold natively ("inf", the store's spelling of infinity)."""
    if isinstance(v, str) and v.lower() in ("inf", "infinity", "-inf", "nan"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("is not a number")
    return float(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("is not true/false")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("is not a string")
    return v


def _strs(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ValueError("is not a list of strings")
    return tuple(v)


def _mapping(v: Any) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError("is not a mapping")
    return MappingProxyType(dict(v))


def _length(v: Any) -> int | float | LengthDist:
    """A workload length: an int, a mean (imported files), or a distribution mapping (sweep files)."""
    if isinstance(v, Mapping):
        try:
            return LengthDist(**v)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"is not a length distribution ({exc})") from None
    return _int(v) if isinstance(v, int) else _float(v)


def _array(dtype: type) -> Callable[[Any], np.ndarray]:
    def convert(v: Any) -> np.ndarray:
        if not isinstance(v, (list, tuple)) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise ValueError("is not a list of numbers")
        out = np.asarray(v, dtype=float)
        if dtype is int:
            if not np.all(out == np.round(out)):
                raise ValueError("is not a list of integers")
            out = out.astype(np.int64)
        out.setflags(write=False)
        return out
    convert.__name__ = f"{dtype.__name__}_array"
    return convert


_ints, _floats = _array(int), _array(float)


def _f(convert: Callable[[Any], Any], *keys: str, required: bool = False, default: Any = None) -> Any:
    """A parsed field: read from the first of ``keys`` present (default: the field's own name)."""
    meta = {"convert": convert, "keys": keys, "required": required}
    if required:
        return field(metadata=meta)
    if isinstance(default, Mapping):  # an empty read-only mapping, one per instance
        return field(default_factory=lambda: MappingProxyType({}), metadata=meta)
    return field(default=default, metadata=meta)


def record_keys(cls: type, name: str) -> tuple[str, ...]:
    """The record keys a field of a section class is read from (first present wins)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.metadata.get("keys") or (name,)


# -- the sections --------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """``config.engine``: the engine arguments as the sweep (or the import) asked for them; None = vLLM default."""

    mode: str = _f(_str, default="offline")  # "offline" | "online"
    model: str | None = _f(_str)  # as written in the sweep: catalog name, HF id, folder or config.json
    tensor_parallel_size: int = _f(_int, default=1)
    pipeline_parallel_size: int = _f(_int, default=1)
    dtype: str | None = _f(_str)
    quantization: str | None = _f(_str)
    kv_cache_dtype: str | None = _f(_str)
    max_num_seqs: int | None = _f(_int)
    max_num_batched_tokens: int | None = _f(_int)
    gpu_memory_utilization: float | None = _f(_float)
    max_model_len: int | None = _f(_int)
    block_size: int | None = _f(_int)
    enforce_eager: bool | None = _f(_bool)
    enable_prefix_caching: bool | None = _f(_bool)
    disable_custom_all_reduce: bool | None = _f(_bool)
    distributed_executor_backend: str | None = _f(_str)
    dummy_weights: bool | None = _f(_bool)
    seed: int | None = _f(_int)
    hardware: str | None = _f(_str)  # the sweep's machine label
    extra_engine_args: Mapping[str, Any] = _f(_mapping, default={})


@dataclass(frozen=True, kw_only=True)
class WorkloadSpec:
    """``config.workload``; lengths are an int, a mean (imported) or a ``LengthDist``."""

    input_len: int | float | LengthDist | None = _f(_length)
    output_len: int | float | LengthDist | None = _f(_length)
    num_prompts: int | None = _f(_int)
    request_rate: float = _f(_float, default=math.inf)  # requests/s; inf = all at once
    burstiness: float | None = _f(_float)
    max_concurrency: int | None = _f(_int)
    seed: int | None = _f(_int)


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """``model``: what the run loaded. ``spec`` falls back to ``config.engine.model``."""

    spec: str | None = _f(_str)
    path: str | None = _f(_str)  # the folder vLLM loaded (may not exist on this machine)
    config_hash: str | None = _f(_str)  # sha256/16 of its config.json


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

    max_num_seqs: int | None = _f(_int)
    max_num_batched_tokens: int | None = _f(_int)
    max_model_len: int | None = _f(_int)
    block_size: int | None = _f(_int)
    enable_chunked_prefill: bool | None = _f(_bool)
    enable_prefix_caching: bool | None = _f(_bool)
    cuda_graphs: bool | None = _f(_bool)
    kv_cache_tokens: int | None = _f(_int, "kv_cache_tokens", "gpu_kv_cache_tokens")  # the latter: older files
    num_gpu_blocks: int | None = _f(_int)
    kv_cache_tokens_log: int | None = _f(_int)  # "GPU KV cache size: N tokens"
    kv_cache_memory_bytes_log: int | None = _f(_int)  # "Available KV cache memory: X GiB", in bytes
    max_concurrency_log: float | None = _f(_float)
    num_gpu_blocks_log: int | None = _f(_int)  # V0's "# GPU blocks"
    max_num_batched_tokens_log: int | None = _f(_int)
    max_model_len_log: int | None = _f(_int)
    vocab_size: int | None = _f(_int)
    startup_s: float | None = _f(_float)
    warmup_s: float | None = _f(_float)
    server_port: int | None = _f(_int)
    dropped_engine_args: tuple[str, ...] = _f(_strs, default=())


def _metric(statistic: str, name: str) -> Any:
    return _f(_float, f"{statistic}_{name}_s")


@dataclass(frozen=True, kw_only=True)
class Measurements:
    """``metrics``, statistic last (the simulator's names). Seconds; rates per second; TPOT excludes the first
    token; ITL = gaps between streamed chunks; ``elapsed_s`` = wall time of the run (offline: ``generate``)."""

    elapsed_s: float | None = _f(_float)
    num_requests: int | None = _f(_int)
    num_failed_requests: int | None = _f(_int)
    num_input_tokens: int | None = _f(_int)
    num_output_tokens: int | None = _f(_int)
    requests_per_second: float | None = _f(_float)
    tokens_per_second: float | None = _f(_float)  # input + output
    output_tokens_per_second: float | None = _f(_float)
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
    decode_tokens_per_s_per_request_mean: float | None = _f(_float, "mean_decode_tokens_per_s_per_request")

    def as_dict(self) -> dict[str, float]:
        """The recorded metrics (None left out) as floats, under these names."""
        return {f.name: float(v) for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True, kw_only=True, eq=False)
class RequestLog:
    """``requests``: one entry per request, read-only numpy arrays (online runs also time each request)."""

    input_lens: np.ndarray = _f(_ints, required=True)  # tokens
    output_lens: np.ndarray = _f(_ints, required=True)  # tokens
    send_s: np.ndarray | None = _f(_floats, "send_s", "arrival_s")  # when each request was sent
    ttft_s: np.ndarray | None = _f(_floats)
    e2e_s: np.ndarray | None = _f(_floats)
    errors: tuple[str, ...] = _f(_strs, default=())

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
    vllm_version: str | None = _f(_str)
    torch_version: str | None = _f(_str)
    cuda_version: str | None = _f(_str)
    driver_version: str | None = _f(_str)
    gpu_name: str | None = _f(_str)
    gpu_count: int | None = _f(_int)
    gpu_memory_bytes: int | None = _f(_int)
    cuda_visible_devices: str | None = _f(_str)
    slurm_job_id: str | None = _f(_str)
    hostname: str | None = _f(_str)
    cpu_count: int | None = _f(_int)
    date_utc: str | None = _f(_str)  # ISO 8601
    python_version: str | None = _f(_str)
    platform: str | None = _f(_str)
    command: str | None = _f(_str)
    server_command: str | None = _f(_str)
    log_file: str | None = _f(_str)
    engine_args: Mapping[str, Any] = _f(_mapping, default={})  # exactly what vLLM got
    imported_from: str | None = _f(_str)
    imported_format: str | None = _f(_str)
    file_sha256: str | None = _f(_str)


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
    top = _section(_Top, mapping, "", run_id)
    if top.status not in STATUSES:
        raise RecordError(f"run {run_id}: status = {top.status!r} is not one of {', '.join(STATUSES)}")
    if top.schema_version != SCHEMA_VERSION:
        raise RecordError(f"run {run_id}: schema_version {top.schema_version} is not {SCHEMA_VERSION}; "
                          "upgrade perfmodel to read it")
    config = _sub(mapping, "config", run_id)
    engine = _section(EngineSpec, _sub(config, "engine", run_id, "config."), "config.engine", run_id)
    workload = _section(WorkloadSpec, _sub(config, "workload", run_id, "config."), "config.workload", run_id)
    model_raw = _sub(mapping, "model", run_id)
    model = _section(ModelRef, model_raw, "model", run_id)
    if model.spec is None and engine.model is not None:
        model = dataclasses.replace(model, spec=engine.model)
    if top.status == "ok" and not isinstance(mapping.get("metrics"), Mapping):
        raise RecordError(f"run {run_id}: metrics is missing from a successful run")
    hardware = model_raw.get("hardware") or engine.hardware
    return RunRecord(
        run_id=run_id, engine_id=top.engine_id, status=top.status, error=top.error,
        schema_version=top.schema_version,
        run=RunSpec(engine=engine, workload=workload, model=model, sweep=top.sweep, group=top.group),
        engine_info=_section(EngineInfo, _sub(mapping, "engine_info", run_id), "engine_info", run_id),
        measurements=_section(Measurements, _sub(mapping, "metrics", run_id), "metrics", run_id),
        requests=_requests(mapping, run_id),
        provenance=_section(Provenance, _sub(mapping, "provenance", run_id), "provenance", run_id,
                            source=top.source, hardware=_str(hardware) if hardware is not None else None))


def parse_records(mappings: list[Mapping[str, Any]]) -> list[RunRecord]:
    return [parse_record(m) for m in mappings]


@dataclass(frozen=True, kw_only=True)
class _Top:
    """The record's top-level scalars."""

    schema_version: int = _f(_int, required=True)
    status: str = _f(_str, required=True)
    engine_id: str | None = _f(_str)
    error: str | None = _f(_str)
    source: str | None = _f(_str)
    sweep: str | None = _f(_str)
    group: str | None = _f(_str)


def _sub(mapping: Mapping[str, Any], key: str, run_id: str, where: str = "") -> Mapping[str, Any]:
    """A nested section; absent or null = empty (the writers store None for sections they have nothing for)."""
    value = mapping.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RecordError(f"run {run_id}: {where}{key} is not a mapping")
    return value


def _section(cls: type, raw: Mapping[str, Any], where: str, run_id: str, **given: Any) -> Any:
    """Build ``cls`` from ``raw`` by each field's converter; ``given`` fills fields that are not read."""
    values = dict(given)
    for f in dataclasses.fields(cls):
        if "convert" not in f.metadata:
            continue
        keys = f.metadata["keys"] or (f.name,)
        key = next((k for k in keys if raw.get(k) is not None), None)
        if key is None:
            if f.metadata["required"]:
                raise RecordError(f"run {run_id}: {where + '.' if where else ''}{keys[0]} is missing")
            continue
        try:
            values[f.name] = f.metadata["convert"](raw[key])
        except ValueError as exc:
            shown = repr(raw[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise RecordError(f"run {run_id}: {where + '.' if where else ''}{key} = {shown} {exc}") from None
    return cls(**values)


def _requests(mapping: Mapping[str, Any], run_id: str) -> RequestLog | None:
    raw = _sub(mapping, "requests", run_id)
    if not raw or raw.get("input_lens") is None:
        return None
    log = _section(RequestLog, raw, "requests", run_id)
    n = len(log.input_lens)
    for name in ("output_lens", "send_s", "ttft_s", "e2e_s"):
        values = getattr(log, name)
        if values is not None and len(values) != n:
            raise RecordError(f"run {run_id}: requests.{name} has {len(values)} entries, input_lens {n}")
    return log
