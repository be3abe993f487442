"""KV-cache offload to host memory under pipeline parallelism (the PipeMax idea), as a capacity and a cost.

With ``PP`` pipeline stages a GPU works on one micro-batch at a time while the other ``PP - 1`` micro-batches
are on other stages. Their KV cache need not sit in GPU memory: it can live in host memory and be copied in
over the GPU's host link (PCIe) just before the micro-batch's turn, and the newly computed KV copied back.

What is modelled:
- Capacity: a replica's KV cache holds ``num_gpu_blocks + num_host_blocks`` blocks, where the host part is
  ``host_fraction x host_memory_bytes / gpus_per_node`` bytes per GPU, in blocks of that GPU's share of the
  KV (its stage's layers, its KV heads). The scheduler sees one larger pool.
- Cost: every stage step must bring its micro-batch's KV in and write the new KV back over the host link,
  ``transfer_s = latency + (context_tokens + new_tokens) x kv_bytes_per_token_per_gpu / host_bandwidth``,
  the two directions counted as if they shared one (conservative: PCIe is full duplex). With double
  buffering, the next micro-batch's KV is prefetched while the current one computes, so a stage step takes
  ``max(compute_s, transfer_s)``: hidden when compute dominates, the bottleneck when traffic does.

What is not modelled: that one micro-batch's KV must fit in the GPU part (the GPU blocks are two staging
buffers: the active and the prefetching micro-batch); GPUs of a node sharing a PCIe switch or the host's
memory bandwidth; pinned-memory limits; keeping hot KV resident to save traffic; sliding-window layers
(their whole context is counted); the first micro-batch's un-overlapped fetch. Without pipeline parallelism
there is no idle micro-batch to hide the copies behind, so offload is refused for ``PP < 2``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hardware.spec import ClusterSpec
from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.cost.memory import MemoryPlan

DEFAULT_HOST_FRACTION = 0.5
NEEDS_PP = "--kv-offload needs --pipeline-parallel-size >= 2 (only idle pipeline micro-batches can live in host memory)"


def check_host_fraction(host_fraction: float) -> None:
    if not 0.0 < host_fraction <= 1.0:
        raise UserError(f"--kv-offload-host-fraction must be in (0, 1], got {host_fraction}")


def host_link(cluster: ClusterSpec) -> tuple[float, float]:
    """``(bandwidth_bytes_per_s, latency_s)`` of one GPU's link to host memory (per direction)."""
    link = cluster.host_to_gpu_link
    if link is not None:
        return link.bandwidth_bytes_per_s, link.latency_s
    return cluster.gpu.pcie_bandwidth_bytes_per_s, 0.0


def host_kv_bytes_per_gpu(cluster: ClusterSpec, host_fraction: float) -> float:
    """Host memory set aside for one GPU's offloaded KV: a fraction of the node's memory, split evenly."""
    check_host_fraction(host_fraction)
    return host_fraction * cluster.host_memory_bytes / cluster.gpus_per_node


def with_offload(plan: MemoryPlan, layout: Layout, cluster: ClusterSpec, block_size: int,
                 host_fraction: float = DEFAULT_HOST_FRACTION) -> MemoryPlan:
    """The memory plan with host KV blocks added to the GPU ones (see the module docstring).

    Layouts without pipeline parallelism are marked as not fitting, with the reason; a GPU without any KV
    room stays without (the GPU blocks are the staging buffers).
    """
    if layout.pp < 2:
        return dataclasses.replace(plan, fits=False, reason=NEEDS_PP)
    if plan.weights_bytes > plan.budget_bytes or plan.num_gpu_blocks == 0:
        return plan
    block_bytes = plan.kv_bytes_per_token * block_size
    host_blocks = int(host_kv_bytes_per_gpu(cluster, host_fraction) // block_bytes)
    blocks = plan.num_gpu_blocks + host_blocks
    tokens = blocks * block_size
    scale = tokens / plan.kv_cache_tokens
    reason = "" if tokens >= plan.max_model_len else (
        f"KV cache (GPU + host) holds {tokens} tokens, fewer than max_model_len {plan.max_model_len}")
    return dataclasses.replace(plan, num_gpu_blocks=blocks, kv_cache_tokens=tokens,
                               max_concurrency=plan.max_concurrency * scale, fits=not reason, reason=reason)


class OffloadStepCost:
    """A step cost with KV offload: ``max(inner(batch), transfer_s(batch))`` per stage (module docstring).

    ``kv_bytes_per_token_per_gpu``: one token's K and V on one GPU (its layers and KV heads), bytes.
    ``host_link_bandwidth_bytes_per_s``: the GPU's host link, one direction. Batch fields may be arrays.
    """

    def __init__(self, inner: Any, kv_bytes_per_token_per_gpu: float, host_link_bandwidth_bytes_per_s: float,
                 host_link_latency_s: float = 0.0) -> None:
        if not host_link_bandwidth_bytes_per_s > 0:
            raise ValueError(f"host link bandwidth must be positive, got {host_link_bandwidth_bytes_per_s}")
        if not kv_bytes_per_token_per_gpu > 0:
            raise ValueError(f"kv_bytes_per_token_per_gpu must be positive, got {kv_bytes_per_token_per_gpu}")
        self.inner = inner
        self.num_stages = inner.num_stages
        self.kv_bytes_per_token_per_gpu = kv_bytes_per_token_per_gpu
        self.host_link_bandwidth_bytes_per_s = host_link_bandwidth_bytes_per_s
        self.host_link_latency_s = host_link_latency_s

    def transfer_time_s(self, batch: Any) -> Any:
        """Seconds to copy the batch's resident KV in and its new KV out over the host link."""
        resident = batch.decode_context_tokens + batch.prefill_context_tokens - batch.num_prefill_tokens
        new = batch.num_prefill_tokens + batch.num_decode_tokens
        num_bytes = (resident + new) * self.kv_bytes_per_token_per_gpu
        if np.ndim(num_bytes) == 0:
            return self.host_link_latency_s + num_bytes / self.host_link_bandwidth_bytes_per_s if num_bytes else 0.0
        num_bytes = np.asarray(num_bytes, dtype=float)
        return np.where(num_bytes > 0, self.host_link_latency_s + num_bytes / self.host_link_bandwidth_bytes_per_s,
                        0.0)

    def breakdown(self, batch: Any) -> dict[str, Any]:
        """The inner cost's parts plus the (overlapped) transfer time; the step is not their sum."""
        parts = dict(self.inner.breakdown(batch)) if hasattr(self.inner, "breakdown") else {}
        parts["kv_offload_transfer_s"] = self.transfer_time_s(batch)
        return parts

    def stage_split_s(self, batch: Any) -> tuple[Any, Any, Any]:
        """The inner cost's V0 pipeline split (preparation, last stage only, engine thread), unchanged by
        offloading."""
        return self.inner.stage_split_s(batch)

    def __call__(self, batch: Any) -> Any:
        compute = self.inner(batch)
        transfer = self.transfer_time_s(batch)
        if np.ndim(compute) == 0 and np.ndim(transfer) == 0:
            return float(max(compute, transfer))
        return np.maximum(compute, transfer)
