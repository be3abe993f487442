"""What a sweep, a run and a results record say about the engine: one frozen ``EngineSpec`` in vLLM's engine
argument names.

A sweep builds it strictly (``calibrate.records.sweep`` checks every key's type first and refuses unknown keys); a
results record is read leniently (``EngineSpec.from_record``: keys it does not know are ignored, and a field
the record does not hold is None, "not recorded", rather than the sweep's default). ``engine_id`` hashes
``to_dict()`` exactly as run ids were always hashed, so the ids in data/ still resolve
(tests/calibrate/test_engine_spec.py checks every record there). ``scenario_options`` turns it into the
``perfmodel.scenario_options.ScenarioOptions`` every path resolves through ``Scenario.from_options``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from calibrate.records.record_fields import RecordError, build_section, parsed, to_bool, to_float, to_int, to_mapping, to_str
from perfmodel.scenario_options import ScenarioOptions

MODES = ("offline", "online")
# Fields whose absence from a record means "not recorded" (None), although a sweep gives them a default.
_SWEEP_DEFAULTS = ("dummy_weights", "dtype", "enforce_eager", "seed")


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """Everything that needs its own vLLM engine; names follow vLLM's engine arguments.

    ``None`` means "vLLM's default" (not passed to vLLM) or, read from a record, "not recorded".
    """

    mode: str = parsed(to_str, default="offline")  # "offline": vllm.LLM in-process; "online": `vllm serve` + client
    model: str | None = parsed(to_str)  # catalog name, HF id, directory with config.json, or a config.json
    dummy_weights: bool | None = parsed(to_bool, default=True)  # load_format="dummy": random weights, same kernels
    tensor_parallel_size: int = parsed(to_int, default=1)
    pipeline_parallel_size: int = parsed(to_int, default=1)
    dtype: str | None = parsed(to_str, default="auto")
    max_num_seqs: int | None = parsed(to_int)
    max_num_batched_tokens: int | None = parsed(to_int)
    gpu_memory_utilization: float | None = parsed(to_float)
    max_model_len: int | None = parsed(to_int)
    enforce_eager: bool | None = parsed(to_bool, default=False)  # True: no CUDA graphs, no torch.compile
    block_size: int | None = parsed(to_int)
    kv_cache_dtype: str | None = parsed(to_str)
    quantization: str | None = parsed(to_str)
    enable_prefix_caching: bool | None = parsed(to_bool)
    disable_custom_all_reduce: bool | None = parsed(to_bool)  # None: True when tensor_parallel_size > 1
    distributed_executor_backend: str | None = parsed(to_str)  # "mp" | "ray" | None (vLLM chooses)
    seed: int | None = parsed(to_int, default=0)
    hardware: str | None = parsed(to_str)  # label of the machine (a hardware catalog name), kept with the results
    extra_engine_args: Mapping[str, Any] = parsed(to_mapping, default={})  # passed to vLLM verbatim

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("tensor_parallel_size", "pipeline_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        object.__setattr__(self, "extra_engine_args", dict(self.extra_engine_args))

    def __hash__(self) -> int:  # extra_engine_args is a dict: hash the canonical form
        return hash(self.engine_id)

    @classmethod
    def from_record(cls, raw: Mapping[str, Any], run_id: str, where: str = "config.engine") -> "EngineSpec":
        """A record's ``config.engine``, leniently: unknown keys ignored, absent ones None; a value of the wrong
        type raises ``RecordError`` naming the run and the key."""
        try:
            return build_section(cls, raw, where, run_id, **{name: None for name in _SWEEP_DEFAULTS})
        except ValueError as exc:  # __post_init__'s checks (RecordError is a UserError, not a ValueError)
            raise RecordError(f"run {run_id}: {where}: {exc}") from None

    @property
    def num_gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def entry_point(self) -> str:
        """vLLM's entry point: the ``LLM`` class offline, ``vllm serve`` online (their defaults differ)."""
        return "offline" if self.mode == "offline" else "serve"

    @property
    def custom_all_reduce_disabled(self) -> bool:
        if self.disable_custom_all_reduce is None:
            return self.tensor_parallel_size > 1
        return self.disable_custom_all_reduce

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["extra_engine_args"] = dict(self.extra_engine_args)
        return d

    @property
    def engine_id(self) -> str:
        return spec_hash(self.to_dict())

    def scenario_options(self, *, hardware: str, model: str | None = None, vllm_version: str | None = None,
                         **resolved: Any) -> ScenarioOptions:
        """The scenario this engine runs: its own arguments, then ``resolved`` on top (what vLLM resolved, when
        a record holds it; None values are skipped). ``vllm_version`` None: the cluster's release."""
        values: dict[str, Any] = {
            "model": model or self.model, "hardware": hardware, "dtype": self.dtype or "auto",
            "quantization": self.quantization, "kv_cache_dtype": self.kv_cache_dtype or "auto",
            "vllm_version": vllm_version, "entry_point": self.entry_point,
            "max_num_seqs": self.max_num_seqs, "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization or None, "max_model_len": self.max_model_len,
            "block_size": self.block_size, "enforce_eager": self.enforce_eager,
            "enable_prefix_caching": self.enable_prefix_caching}
        values.update({k: v for k, v in resolved.items() if v is not None})
        return ScenarioOptions(**values)


def spec_hash(d: Mapping[str, Any]) -> str:
    """sha256/16 of the canonical JSON: the run and engine ids of every results file."""
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_default(o: Any) -> Any:
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, float) and math.isinf(o):
        return "inf"
    raise TypeError(f"not JSON serialisable: {o!r}")
