"""What a user says about a scenario, as names, paths and numbers: ``ScenarioOptions`` (frozen, picklable).

``perfmodel.scenario.Scenario.from_options`` resolves it; the CLI builds one from flags; ``plan`` sends it to its
worker processes. This module imports nothing heavy, so the CLI can build its parser from these lists cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

BATCHING = ("continuous", "static")
ENTRY_POINTS = ("offline", "serve")
DISTRIBUTIONS = ("fixed", "uniform", "normal", "lognormal")  # perfmodel.analysis.simulate.length_distribution's kinds


@dataclass(frozen=True, kw_only=True)
class ScenarioOptions:
    """A scenario as the user gives it. ``None`` engine fields mean "vLLM's default for this release and GPU".

    model: catalog name, HF id, model directory or config.json; hardware: GPU or cluster name, or a YAML path.
    entry_point: "offline" (vLLM's ``LLM`` class) or "serve" (``vllm serve``): their defaults differ.
    input_len, output_len, num_prompts: the offline workload the closed form ranks layouts by (tokens).
    """

    model: str = "llama-3.1-70b"
    hardware: str = "taiwania2"
    dtype: str = "auto"
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    calibration: str | None = None  # profile YAML; None: the profile shipped for the GPU
    vllm_version: str | None = None  # None: the release perfmodel models by default
    entry_point: str = "offline"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    block_size: int | None = None
    enforce_eager: bool | None = None
    enable_chunked_prefill: bool | None = None  # None: the release's default (V1 on; V0 only past 32k context)
    enable_prefix_caching: bool | None = None  # None: off (perfmodel's default; vLLM V1 turns it on)
    input_len: int = 100
    output_len: int = 600
    num_prompts: int = 300
    batching: str = "continuous"
    static_batch_size: int | None = None  # None: as large as memory and max_num_seqs allow
    kv_offload: bool = False  # KV of idle pipeline micro-batches in host memory (perfmodel.cost.offload); PP >= 2
    kv_offload_host_fraction: float = 0.5  # of a node's host memory, shared by its GPUs
    nodes: int | None = None  # this many nodes of the hardware for the job (None: the hardware's own count)
    tp_across_nodes: bool | None = None  # TP groups may span nodes (None: yes without ``nodes``, no with it)
    expert_parallel: bool = False  # vLLM's --enable-expert-parallel: MoE experts split over TP x DP GPUs

    def __post_init__(self) -> None:
        from perfmodel.errors import UserError

        if self.kv_offload and self.batching == "static":  # offload overlaps idle micro-batches of continuous PP
            raise UserError("--kv-offload models continuous batching's idle pipeline micro-batches; it does not "
                            "apply to --batching static")

    def replace(self, **changes: Any) -> "ScenarioOptions":
        return dataclasses.replace(self, **changes)

    def engine_overrides(self) -> dict[str, Any]:
        """The engine arguments the user set (vLLM's names), for ``default_engine_args``."""
        names = ("max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization", "max_model_len", "block_size",
                 "enforce_eager", "enable_chunked_prefill", "enable_prefix_caching")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}
