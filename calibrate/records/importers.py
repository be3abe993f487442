"""Read results measured elsewhere into the store's record format (`source: "imported"`).

Formats (detected from the content):
- `vllm bench throughput --output-json` and the older `benchmarks/benchmark_throughput.py --output-json`:
  one JSON object with `elapsed_time, num_requests, total_num_tokens, requests_per_second, tokens_per_second`.
  It holds no lengths or engine settings: pass them as `overrides` (the CLI's --input-len, --output-len, -tp ...).
- `vllm bench serve --save-result` (also `--append-result`: one object per line) and the older
  `benchmarks/benchmark_serving.py` result JSON: `duration, completed, total_input_tokens, total_output_tokens,
  request_throughput, output_throughput, total_token_throughput, mean_ttft_ms, p99_itl_ms, ...`.
- CSV with one row per run; columns are documented in calibrate/README.md ("CSV import").
- The Taiwania 2 experiment-log CSV (header with `job_id` and `mean_decode_tokens_per_s_per_request`, as in
  data/taiwania/): its columns are renamed by `EXPERIMENT_LOG_COLUMNS` (calibrate/README.md, "Experiment-log
  CSV") and each row keeps its job id and NCCL settings in its provenance.
- Records of this package (a results file from another machine): taken as they are.
What a file does not say is left null.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from calibrate.records.bench_metadata import checked, file_metadata
from calibrate.records.engine_spec import EngineSpec
from calibrate.records.store import SCHEMA_VERSION
from perfmodel.errors import UserError

ENGINE_FIELDS = [
    "mode", "model", "dummy_weights", "tensor_parallel_size", "pipeline_parallel_size", "dtype", "max_num_seqs",
    "max_num_batched_tokens", "gpu_memory_utilization", "max_model_len", "enforce_eager", "block_size",
    "kv_cache_dtype", "quantization", "enable_prefix_caching", "hardware"]
WORKLOAD_FIELDS = ["input_len", "output_len", "num_prompts", "request_rate", "burstiness", "max_concurrency", "seed"]
METRIC_FIELDS = ["elapsed_s", "num_requests", "num_failed_requests", "num_input_tokens", "num_output_tokens",
                 "requests_per_second", "tokens_per_second", "output_tokens_per_second"] + [
    f"{stat}_{name}_s" for name in ("ttft", "tpot", "itl", "e2e") for stat in ("mean", "median", "p90", "p99")]
PROVENANCE_FIELDS = ["vllm_version", "torch_version", "cuda_version", "driver_version", "gpu_name", "gpu_count",
                     "hostname", "date_utc"]
ENGINE_INFO_FIELDS = ["kv_cache_tokens", "num_gpu_blocks", "cuda_graphs"]
_ALIASES = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size"}
_INT = {"input_len", "output_len", "tensor_parallel_size", "pipeline_parallel_size", "max_num_seqs", "max_num_batched_tokens", "max_model_len",
        "block_size", "num_prompts", "max_concurrency", "seed", "num_requests", "num_failed_requests",
        "num_input_tokens", "num_output_tokens", "gpu_count", "kv_cache_tokens", "num_gpu_blocks"}
_BOOL = {"dummy_weights", "enforce_eager", "enable_prefix_caching", "cuda_graphs"}
_STR = {"mode", "model", "dtype", "kv_cache_dtype", "quantization", "hardware", "vllm_version", "torch_version",
        "cuda_version", "driver_version", "gpu_name", "hostname", "date_utc"}


# The Taiwania 2 experiment log (data/taiwania/PROVENANCE.md): its column -> this package's name. Columns mapped to
# None are implied by others (gpus = tp x pp x nodes' share).
EXPERIMENT_LOG_COLUMNS = {
    "job_id": "job_id", "nodes": "nodes", "gpus": None, "tensor_parallel_size": "tensor_parallel_size",
    "pipeline_parallel_size": "pipeline_parallel_size",
    "distributed_executor_backend": "distributed_executor_backend", "nccl_env": "nccl_env",
    "concurrency": "max_concurrency", "num_requests": "num_prompts", "input_tokens": "input_len",
    "output_tokens": "output_len", "max_model_len": "max_model_len", "max_num_seqs": "max_num_seqs",
    "max_num_batched_tokens": "max_num_batched_tokens", "gpu_memory_utilization": "gpu_memory_utilization",
    "output_tokens_per_s": "output_tokens_per_second", "mean_ttft_s": "mean_ttft_s",
    "mean_decode_tokens_per_s_per_request": "mean_decode_tokens_per_s_per_request", "mean_latency_s": "mean_e2e_s",
}
# What the log's runs share (PROVENANCE.md: stock vLLM 0.7.0, `vllm serve` with --dtype float16 --quantization
# gptq, a streaming closed-loop client); a row without num_requests ran 4 x concurrency requests (at least 8),
# as the rows that state it did.
EXPERIMENT_LOG_DEFAULTS = {"mode": "online", "dtype": "float16", "quantization": "gptq", "request_rate": "inf",
                           "vllm_version": "0.7.0"}
EXPERIMENT_LOG_EXTRA = {"job_id": "provenance", "nodes": "provenance", "nccl_env": "provenance",
                        "distributed_executor_backend": "engine", "mean_decode_tokens_per_s_per_request": "metrics"}


class ImportFormatError(UserError, ValueError):
    """A file cannot be imported: one line naming the file and the problem."""


def import_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Records from one file; `overrides` fills config fields the file lacks (model, hardware, lengths ...).

    Every record is checked against the results schema (calibrate.records.record_schema, the check fit and check run
    too); the first that fails raises ImportFormatError naming the file and the line."""
    path = Path(path)
    records, lines = _import_file(path, overrides)
    from calibrate.records.record_schema import record_problem

    for rec, line in zip(records, lines):
        problem = record_problem(rec)
        if problem:
            raise ImportFormatError(f"{path}: line {line}: {problem}")
    return records


def _import_file(path: Path, overrides: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], list[int]]:
    """The records of one file and the line each came from."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read ({exc.strerror})") from None
    overrides = {_ALIASES.get(k, k): v for k, v in (overrides or {}).items() if v is not None}
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ImportFormatError(f"{path}: line {line}: not UTF-8 text: not a vLLM benchmark result (JSON) or "
                                "CSV") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows:
            raise ImportFormatError(f"{path}: no rows")
        convert = _from_experiment_log if {"job_id", "mean_decode_tokens_per_s_per_request"} <= set(rows[0]) \
            else _from_csv
        return ([_converted(convert, row, i, path, digest, overrides, i + 2) for i, row in enumerate(rows)],
                [i + 2 for i in range(len(rows))])
    objects, lines = _json_objects(text, path)
    out = []
    for i, (obj, line) in enumerate(zip(objects, lines)):
        kind = detect(obj)
        if kind is None:
            keys = ", ".join(sorted(map(str, obj))[:8])
            raise ImportFormatError(f"{path}: line {line}: object {i + 1} is no vLLM benchmark result I know "
                                    f"(keys: {keys})")
        if kind == "record":
            out.append(dict(obj))
        else:
            convert = _from_throughput if kind == "throughput" else _from_serve
            out.append(_converted(convert, obj, i, path, digest, overrides, line))
    return out, lines


def _converted(convert, obj, i: int, path: Path, digest: str, overrides: Mapping[str, Any], line: int):
    """``convert(obj, ...)``; a field of the wrong type or size (a string, a list, 1e999) is one line."""
    try:
        return convert(obj, i, path, digest, overrides)
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        if isinstance(exc, ImportFormatError):
            raise
        raise ImportFormatError(f"{path}: line {line}: a field has the wrong type or size for a vLLM benchmark "
                                f"result ({' '.join(str(exc).split())[:120]})") from None


def import_files(paths: Iterable[str | Path], overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    return [rec for p in paths for rec in import_file(p, overrides)]


def detect(obj: Mapping[str, Any]) -> str | None:
    """"throughput", "serve", "record" (this package's own) or None."""
    if "run_id" in obj and "schema_version" in obj:
        return "record"
    if "elapsed_time" in obj and ("tokens_per_second" in obj or "total_num_tokens" in obj):
        return "throughput"
    if "duration" in obj and "completed" in obj:
        return "serve"
    return None


def _json_objects(text: str, path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    if not text.strip():
        raise ImportFormatError(f"{path}: empty file")
    try:
        return _decode_objects(text, path)
    except RecursionError:
        raise ImportFormatError(f"{path}: JSON nested too deeply to be a benchmark result") from None


def _decode_objects(text: str, path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The objects and the line each starts on (a JSON list: the line of the list)."""
    lines: list[int] = []
    try:
        obj = json.loads(text)
        objs = obj if isinstance(obj, list) else [obj]
        lines = [text.count("\n", 0, len(text) - len(text.lstrip())) + 1] * len(objs)
    except json.JSONDecodeError:
        objs = []
        dec = json.JSONDecoder()
        pos = len(text) - len(text.lstrip())
        while pos < len(text):  # several objects, one after another (--append-result, JSON lines)
            try:
                obj, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise ImportFormatError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
            objs.append(obj)
            lines.append(text.count("\n", 0, pos) + 1)
            pos = end
            while pos < len(text) and text[pos].isspace():
                pos += 1
    if not all(isinstance(o, dict) for o in objs):
        raise ImportFormatError(f"{path}: expected JSON objects")
    return objs, lines


def _record(*, path: Path, digest: str, index: int, kind: str, engine: dict[str, Any], workload: dict[str, Any],
            metrics: dict[str, Any], provenance: dict[str, Any], requests: dict[str, list] | None,
            engine_info: dict[str, Any] | None = None, status: str = "ok") -> dict[str, Any]:
    defaults = {f: None for f in ENGINE_FIELDS}
    defaults.update({"tensor_parallel_size": 1, "pipeline_parallel_size": 1})
    engine = {**defaults, **{k: v for k, v in engine.items() if v is not None}}
    engine_id = hashlib.sha256(json.dumps(engine, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {
        "schema_version": SCHEMA_VERSION,
        "source": "imported",
        "run_id": hashlib.sha256(f"{digest}:{index}".encode()).hexdigest()[:16],
        "engine_id": engine_id,
        "sweep": None,
        "group": None,
        "status": status,
        "error": None,
        "config": {"engine": engine,
                   "workload": {**{f: None for f in WORKLOAD_FIELDS}, **workload}},
        "model": {"spec": engine.get("model"), "path": None, "config_hash": None, "hardware": engine.get("hardware")},
        "metrics": {**{f: None for f in METRIC_FIELDS}, **metrics},
        "engine_info": {**{f: None for f in ENGINE_INFO_FIELDS}, **(engine_info or {})},
        "provenance": {**{f: None for f in PROVENANCE_FIELDS}, **provenance,
                       "imported_from": str(path), "imported_format": kind, "file_sha256": digest},
        "requests": requests,
    }


def _split(overrides: Mapping[str, Any], obj: Mapping[str, Any] | None = None,
           where: str = "") -> tuple[dict, dict, dict]:
    """Engine, workload and provenance fields: the file's own (``--metadata`` keys, calibrate.records.bench_metadata),
    then the command line's ``overrides`` over them; validated."""
    known = set(ENGINE_FIELDS) | set(WORKLOAD_FIELDS) | set(PROVENANCE_FIELDS)
    from_file = file_metadata(obj, known - {"request_rate"}) if obj is not None else {}
    overrides = checked({**from_file, **overrides}, where, ImportFormatError)
    eng = {k: v for k, v in overrides.items() if k in ENGINE_FIELDS}
    work = {k: v for k, v in overrides.items() if k in WORKLOAD_FIELDS}
    prov = {k: v for k, v in overrides.items() if k in PROVENANCE_FIELDS}
    return eng, work, prov


def _from_throughput(obj: Mapping[str, Any], i: int, path: Path, digest: str,
                     overrides: Mapping[str, Any]) -> dict[str, Any]:
    eng, work, prov = _split(overrides, _without(obj, "num_requests"), f"{path}: object {i + 1}")
    elapsed = _number(obj, "elapsed_time")
    n = _count(obj, "num_requests") or 0
    total = _count(obj, "total_num_tokens")
    n_out = _count(obj, "total_output_tokens") if "total_output_tokens" in obj else _count(obj, "num_output_tokens")
    if n_out is None and isinstance(work.get("output_len"), int):
        n_out = n * work["output_len"]
    n_in = None
    if total is not None and n_out is not None:
        n_in = int(total) - int(n_out)
    elif isinstance(work.get("input_len"), int):
        n_in = n * work["input_len"]
    metrics = {
        "elapsed_s": elapsed,
        "num_requests": n,
        "num_input_tokens": n_in,
        "num_output_tokens": None if n_out is None else int(n_out),
        "requests_per_second": obj.get("requests_per_second"),
        "tokens_per_second": obj.get("tokens_per_second"),
        "output_tokens_per_second": None if n_out is None or elapsed <= 0 else int(n_out) / elapsed,
    }
    work.setdefault("num_prompts", n)
    work.setdefault("request_rate", "inf")
    eng.setdefault("mode", "offline")
    return _record(path=path, digest=digest, index=i, kind="vllm-bench-throughput", engine=eng, workload=work,
                   metrics=metrics, provenance=prov, requests=None)


def _from_serve(obj: Mapping[str, Any], i: int, path: Path, digest: str,
                overrides: Mapping[str, Any]) -> dict[str, Any]:
    eng, work, prov = _split(overrides, _without(obj, "num_prompts", "burstiness", "max_concurrency"),
                             f"{path}: object {i + 1}")
    if not isinstance(obj.get("model_id"), (str, type(None))):
        raise ValueError(f"model_id = {obj['model_id']!r} is not a string")
    eng.setdefault("model", obj.get("model_id"))
    eng.setdefault("mode", "online")
    completed = _count(obj, "completed") or 0
    n_in, n_out = _count(obj, "total_input_tokens"), _count(obj, "total_output_tokens")
    metrics: dict[str, Any] = {
        "elapsed_s": obj.get("duration"),
        "num_requests": completed,
        "num_failed_requests": obj.get("failed"),
        "num_input_tokens": n_in,
        "num_output_tokens": n_out,
        "requests_per_second": obj.get("request_throughput"),
        "tokens_per_second": obj.get("total_token_throughput"),
        "output_tokens_per_second": obj.get("output_throughput"),
    }
    for name, theirs in (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("e2e", "e2el")):
        for stat in ("mean", "median", "p90", "p99"):
            v = obj.get(f"{stat}_{theirs}_ms")
            metrics[f"{stat}_{name}_s"] = None if v is None else float(v) / 1000.0
    rate = obj.get("request_rate")
    if isinstance(rate, str) or rate is None or (isinstance(rate, float) and math.isinf(rate)):
        rate = "inf" if rate in (None, "inf", "Infinity") or (isinstance(rate, float) and math.isinf(rate)) else rate
    work.setdefault("num_prompts", obj.get("num_prompts", completed))
    work.setdefault("request_rate", rate)
    work.setdefault("burstiness", obj.get("burstiness"))
    work.setdefault("max_concurrency", obj.get("max_concurrency"))
    if completed:
        if n_in is not None:
            work.setdefault("input_len", _mean_len(obj.get("input_lens"), n_in, completed))
        if n_out is not None:
            work.setdefault("output_len", _mean_len(obj.get("output_lens"), n_out, completed))
    prov.setdefault("date_utc", obj.get("date"))
    requests = None
    if obj.get("input_lens") is not None:
        requests = {"input_lens": obj.get("input_lens"), "output_lens": obj.get("output_lens"),
                    "ttft_s": obj.get("ttfts"), "e2e_s": obj.get("latencies")}
    return _record(path=path, digest=digest, index=i, kind="vllm-bench-serve", engine=eng, workload=work,
                   metrics=metrics, provenance=prov, requests=requests)


def _count(obj: Mapping[str, Any], key: str) -> int | None:
    """A JSON whole number (or null) as vLLM's benchmarks write counts; text or a list is a ValueError."""
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
        raise ValueError(f"{key} = {v!r} is not a whole number")
    return int(v)


def _number(obj: Mapping[str, Any], key: str) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{key} = {v!r} is not a number")
    return float(v)


def _without(obj: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The object less the keys its converter reads itself (metrics and arrival settings)."""
    return {k: v for k, v in obj.items() if k not in keys}


def _mean_len(lens: list | None, total: int, n: int) -> int | float:
    """The common length when every request has it, else the mean."""
    if lens and len(set(lens)) == 1:
        return int(lens[0])
    mean = total / n
    return int(mean) if mean == int(mean) else mean


def _from_csv(row: Mapping[str, str], i: int, path: Path, digest: str,
              overrides: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    known = set(ENGINE_FIELDS) | set(WORKLOAD_FIELDS) | set(METRIC_FIELDS) | set(PROVENANCE_FIELDS) | set(
        ENGINE_INFO_FIELDS)
    for col, text in row.items():
        if col is None:
            raise ImportFormatError(f"{path}: row {i + 2} has more cells than the header")
        key = _ALIASES.get(col.strip(), col.strip())
        if key not in known:
            raise ImportFormatError(f"{path}: unknown column '{col}' (see calibrate/README.md, CSV import)")
        text = (text or "").strip()
        if text == "":
            continue
        values[key] = _convert(key, text, path, i)
    values = {**values, **{_ALIASES.get(k, k): v for k, v in overrides.items()}}
    if not values.get("model"):
        raise ImportFormatError(f"{path}: row {i + 2}: model is missing (column model, or --model)")
    if not any(values.get(k) is not None for k in
               ("elapsed_s", "requests_per_second", "tokens_per_second", "output_tokens_per_second")):
        raise ImportFormatError(f"{path}: row {i + 2}: no throughput (elapsed_s or a *_per_second column)")
    values = checked(values, f"{path}: row {i + 2}", ImportFormatError)
    eng = {k: v for k, v in values.items() if k in ENGINE_FIELDS}
    work = {k: v for k, v in values.items() if k in WORKLOAD_FIELDS}
    metrics = {k: v for k, v in values.items() if k in METRIC_FIELDS}
    prov = {k: v for k, v in values.items() if k in PROVENANCE_FIELDS}
    info = {k: v for k, v in values.items() if k in ENGINE_INFO_FIELDS}
    eng.setdefault("mode", "offline")
    return _record(path=path, digest=digest, index=i, kind="csv", engine=eng, workload=work, metrics=metrics,
                   provenance=prov, requests=None, engine_info=info)


def _from_experiment_log(row: Mapping[str, str], i: int, path: Path, digest: str,
                         overrides: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the experiment log, renamed to the CSV schema; job id, nodes and NCCL settings kept."""
    renamed: dict[str, str] = {}
    extra: dict[str, dict[str, Any]] = {"provenance": {}, "engine": {}, "metrics": {}}
    for col, text in row.items():
        if col not in EXPERIMENT_LOG_COLUMNS:
            raise ImportFormatError(f"{path}: unknown experiment-log column '{col}' (see calibrate/README.md)")
        name = EXPERIMENT_LOG_COLUMNS[col]
        text = (text or "").strip()
        if name is None:
            continue
        if name in EXPERIMENT_LOG_EXTRA:
            value = int(text) if name == "nodes" and text else text
            extra[EXPERIMENT_LOG_EXTRA[name]][name] = float(text) if name.startswith("mean_") else value
        else:
            renamed[name] = text
    for key, value in EXPERIMENT_LOG_DEFAULTS.items():
        renamed.setdefault(key, value)
    if not renamed.get("num_prompts"):
        renamed["num_prompts"] = str(max(8, 4 * int(renamed["max_concurrency"])))
    record = _from_csv(renamed, i, path, digest, overrides)
    for section, values in extra.items():
        target = record["config"]["engine"] if section == "engine" else record[section]
        target.update(values)
    record["provenance"]["hardware"] = record["config"]["engine"].get("hardware")
    return record


def _convert(key: str, text: str, path: Path, i: int) -> Any:
    try:
        if key in _STR:
            return text
        if key in _BOOL:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if key == "request_rate" and text.lower() in ("inf", "infinity"):
            return "inf"
        if key in _INT:
            return int(float(text))
        return float(text)
    except ValueError:
        raise ImportFormatError(f"{path}: row {i + 2}: {key}: cannot read {text!r}") from None


def _engine_fields_check() -> None:  # the CSV columns follow EngineSpec's names
    names = {f for f in EngineSpec.__dataclass_fields__}
    assert set(ENGINE_FIELDS) <= names, set(ENGINE_FIELDS) - names


_engine_fields_check()
