"""What a ``vllm bench`` result file says about its engine and hardware, kept on import, and checked.

``vllm bench serve --metadata KEY=VALUE ...`` (and the older benchmarks/benchmark_serving.py) writes each
pair as a top-level key of the result JSON, values as strings (vLLM 0.7.0 benchmarks/benchmark_serving.py
main: ``result_json[kvstring[0].strip()] = kvstring[1].strip()``); users name them after vLLM's flags
(``tensor_parallel_size=8``, ``tp=8``, ``max-num-seqs=256``). Those keys, and any the file holds under this
package's names (``hardware``, ``gpu_name``, ``vllm_version`` ...), fill the record; the command line's flags
win over them. Engine values are validated: sizes must be positive integers, ``gpu_memory_utilization`` in
(0, 1].
"""
from __future__ import annotations

from typing import Any, Mapping

# metadata spellings -> this package's field names (besides the names themselves)
METADATA_ALIASES = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size", "gpu": "gpu_name",
                    "model_id": "model", "vllm": "vllm_version", "version": "vllm_version", "quant": "quantization"}
POSITIVE_INT = ("tensor_parallel_size", "pipeline_parallel_size", "max_num_seqs", "max_num_batched_tokens",
                "max_model_len", "block_size", "gpu_count", "num_prompts", "max_concurrency")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _key(name: str) -> str:
    key = str(name).strip().lstrip("-").replace("-", "_").lower()
    return METADATA_ALIASES.get(key, key)


def file_metadata(obj: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    """The keys of a result object that name a field in ``known`` (engine, workload, provenance), by their
    field names; values as the file has them (checked and converted by :func:`checked`)."""
    out = {}
    for name, value in obj.items():
        key = _key(name)
        if key in known and value is not None and value != "":
            out[key] = value
    return out


def checked(values: Mapping[str, Any], where: str, error: type[Exception]) -> dict[str, Any]:
    """``values`` converted (strings from ``--metadata`` to ints, floats, bools) and validated; raises
    ``error`` with one line naming ``where`` and the field."""
    out = dict(values)
    for key in POSITIVE_INT:
        if out.get(key) is None:
            continue
        try:
            number = float(out[key])
            ok = number == int(number) and number >= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise error(f"{where}: {key} must be a positive integer, got {out[key]!r}")
        out[key] = int(number)
    if out.get("gpu_memory_utilization") is not None:
        try:
            util = float(out["gpu_memory_utilization"])
        except (TypeError, ValueError):
            util = float("nan")
        if not 0.0 < util <= 1.0:
            raise error(f"{where}: gpu_memory_utilization must be in (0, 1], got {out['gpu_memory_utilization']!r}")
        out["gpu_memory_utilization"] = util
    for key in ("enforce_eager", "enable_prefix_caching", "dummy_weights"):
        value = out.get(key)
        if isinstance(value, str):
            if value.strip().lower() not in _TRUE + _FALSE:
                raise error(f"{where}: {key} must be true or false, got {value!r}")
            out[key] = value.strip().lower() in _TRUE
    return out
