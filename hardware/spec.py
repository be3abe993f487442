"""Frozen descriptions of GPUs, links and clusters.

Pure data: every number is SI (bytes, bytes/s, FLOP/s, seconds). ``__post_init__`` only checks values and
freezes mappings; it never reads or writes files. The loader in :mod:`hardware.catalog` builds these from YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from hardware.errors import UserError

#: dtype names a GPU may offer in ``peak_flops_per_s`` (a missing key means "not supported").
DTYPES = ("float16", "bfloat16", "fp8", "int8", "float32")

GIB = 1024**3  #: bytes in a GiB (vLLM's GiB_bytes); memory is in bytes everywhere else

#: how the GPUs of one node talk to each other.
TOPOLOGIES = ("nvswitch", "hybrid_cube_mesh", "pcie")


class SpecError(UserError, ValueError):
    """A value that no GPU or cluster can have (raised by ``__post_init__``)."""


def _positive(owner: str, field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{owner}: {field} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"{owner}: {field} must be a positive number, got {value!r}")


def _non_negative_int(owner: str, field: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{owner}: {field} must be a non-negative integer, got {value!r}")


def _positive_int(owner: str, field: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{owner}: {field} must be a positive integer, got {value!r}")


def _freeze(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """One GPU model, from its datasheet.

    Fields:
        name: catalog key, e.g. ``"h100-sxm"``.
        display_name: human name, e.g. ``"NVIDIA H100 SXM5 80GB"``.
        memory_bytes: device memory the CUDA runtime reports as total (what vLLM scales by
            ``gpu_memory_utilization``).
        memory_bandwidth_bytes_per_s: peak HBM bandwidth.
        peak_flops_per_s: dense (no sparsity) tensor peak per dtype; keys among :data:`DTYPES`;
            a missing key means the GPU cannot run GEMMs in that dtype.
        num_sms: streaming multiprocessors.
        compute_capability: ``"major.minor"``.
        nvlink_links: NVLink links per GPU (0 = none).
        nvlink_bandwidth_per_link_bytes_per_s: one link, one direction.
        pcie_bandwidth_bytes_per_s: the GPU's PCIe x16 link, one direction.
        sources: field name -> citation (URL or document title) for every number.
    """

    name: str
    display_name: str
    memory_bytes: float
    memory_bandwidth_bytes_per_s: float
    peak_flops_per_s: Mapping[str, float]
    num_sms: int
    compute_capability: str
    nvlink_links: int
    nvlink_bandwidth_per_link_bytes_per_s: float
    pcie_bandwidth_bytes_per_s: float
    sources: Mapping[str, str]

    def __post_init__(self) -> None:
        owner = f"GPU {self.name!r}"
        _positive(owner, "memory_bytes", self.memory_bytes)
        _positive(owner, "memory_bandwidth_bytes_per_s", self.memory_bandwidth_bytes_per_s)
        if not self.peak_flops_per_s:
            raise SpecError(f"{owner}: peak_flops_per_s needs at least one dtype")
        for dtype, flops in self.peak_flops_per_s.items():
            if dtype not in DTYPES:
                raise SpecError(f"{owner}: unknown dtype {dtype!r} in peak_flops_per_s (known: {', '.join(DTYPES)})")
            _positive(owner, f"peak_flops_per_s.{dtype}", flops)
        _positive_int(owner, "num_sms", self.num_sms)
        parts = str(self.compute_capability).split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise SpecError(f"{owner}: compute_capability must look like '9.0', got {self.compute_capability!r}")
        _non_negative_int(owner, "nvlink_links", self.nvlink_links)
        if self.nvlink_links > 0:
            _positive(owner, "nvlink_bandwidth_per_link_bytes_per_s", self.nvlink_bandwidth_per_link_bytes_per_s)
        elif self.nvlink_bandwidth_per_link_bytes_per_s < 0:
            raise SpecError(f"{owner}: nvlink_bandwidth_per_link_bytes_per_s must not be negative")
        _positive(owner, "pcie_bandwidth_bytes_per_s", self.pcie_bandwidth_bytes_per_s)
        object.__setattr__(self, "peak_flops_per_s", _freeze(self.peak_flops_per_s))
        object.__setattr__(self, "sources", _freeze(self.sources))

    @property
    def nvlink_bandwidth_bytes_per_s(self) -> float:
        """All NVLink links together, one direction (bytes/s); 0 without NVLink."""
        return self.nvlink_links * self.nvlink_bandwidth_per_link_bytes_per_s

    def supports(self, dtype: str) -> bool:
        """Whether the GPU has a tensor-core peak for ``dtype``."""
        return dtype in self.peak_flops_per_s


@dataclass(frozen=True, kw_only=True)
class LinkSpec:
    """A point-to-point link (NVLink, PCIe, InfiniBand port).

    Fields:
        name: e.g. ``"nvlink2"``, ``"pcie-gen3-x16"``, ``"ib-edr"``.
        bandwidth_bytes_per_s: one direction.
        latency_s: per-message (α) latency of one step over this link.
        source: citation for both numbers.
    """

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    source: str

    def __post_init__(self) -> None:
        owner = f"link {self.name!r}"
        _positive(owner, "bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)
        _positive(owner, "latency_s", self.latency_s)
        if not str(self.source).strip():
            raise SpecError(f"{owner}: source must not be empty")


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """Identical nodes of ``gpus_per_node`` GPUs, joined by a network.

    Fields:
        name, display_name: catalog key and human name.
        gpu: the GPU every node carries.
        gpus_per_node, num_nodes: shape of the machine.
        max_nodes_per_job, max_job_time_s: scheduler limits (``None`` = no limit).
        intra_node_topology: one of :data:`TOPOLOGIES`.
        nvlink_matrix: NVLink count between GPU i and j of a node (point-to-point meshes only).
        intra_node_link: per NVLink for meshes; per GPU through the switch for nvswitch; PCIe for pcie.
        inter_node_link: one NIC port (``None`` for a single node without a fabric).
        nics_per_node: NIC ports usable for GPU traffic.
        host_memory_bytes: CPU memory of one node.
        host_to_gpu_link: one GPU's link to host memory.
        sources: field name -> citation for every number.
        vllm_version: the vLLM release installed there; commands default to its engine (optional key).
    """

    name: str
    display_name: str
    gpu: GpuSpec
    gpus_per_node: int
    num_nodes: int
    max_nodes_per_job: int | None
    max_job_time_s: float | None
    intra_node_topology: str
    nvlink_matrix: tuple[tuple[int, ...], ...] | None
    intra_node_link: LinkSpec
    inter_node_link: LinkSpec | None
    nics_per_node: int
    host_memory_bytes: float
    host_to_gpu_link: LinkSpec
    sources: Mapping[str, str]
    vllm_version: str | None = None  # the vLLM release the cluster's users run (None: not known)

    def __post_init__(self) -> None:
        owner = f"cluster {self.name!r}"
        _positive_int(owner, "gpus_per_node", self.gpus_per_node)
        _positive_int(owner, "num_nodes", self.num_nodes)
        if self.max_nodes_per_job is not None:
            _positive_int(owner, "max_nodes_per_job", self.max_nodes_per_job)
        if self.max_job_time_s is not None:
            _positive(owner, "max_job_time_s", self.max_job_time_s)
        if self.intra_node_topology not in TOPOLOGIES:
            raise SpecError(
                f"{owner}: intra_node_topology must be one of {', '.join(TOPOLOGIES)}, "
                f"got {self.intra_node_topology!r}"
            )
        if self.intra_node_topology == "hybrid_cube_mesh":
            if self.nvlink_matrix is None:
                raise SpecError(f"{owner}: a hybrid_cube_mesh node needs nvlink_matrix")
            self._check_matrix(owner)
        elif self.nvlink_matrix is not None:
            self._check_matrix(owner)
        _non_negative_int(owner, "nics_per_node", self.nics_per_node)
        if self.num_nodes > 1 and (self.inter_node_link is None or self.nics_per_node == 0):
            raise SpecError(f"{owner}: more than one node needs inter_node_link and nics_per_node > 0")
        _positive(owner, "host_memory_bytes", self.host_memory_bytes)
        object.__setattr__(self, "sources", _freeze(self.sources))

    def _check_matrix(self, owner: str) -> None:
        m = self.nvlink_matrix
        n = self.gpus_per_node
        if len(m) != n or any(len(row) != n for row in m):
            raise SpecError(f"{owner}: nvlink_matrix must be {n}x{n}")
        for i in range(n):
            if m[i][i] != 0:
                raise SpecError(f"{owner}: nvlink_matrix[{i}][{i}] must be 0")
            for j in range(n):
                if m[i][j] != m[j][i] or m[i][j] < 0:
                    raise SpecError(f"{owner}: nvlink_matrix must be symmetric and non-negative (at {i},{j})")
            if sum(m[i]) > self.gpu.nvlink_links:
                raise SpecError(
                    f"{owner}: GPU {i} uses {sum(m[i])} NVLinks but {self.gpu.name} has {self.gpu.nvlink_links}"
                )

    @property
    def num_gpus(self) -> int:
        """All GPUs of the cluster."""
        return self.gpus_per_node * self.num_nodes

    @property
    def max_gpus_per_job(self) -> int:
        """GPUs one job may use (node limit applied)."""
        nodes = self.num_nodes if self.max_nodes_per_job is None else min(self.num_nodes, self.max_nodes_per_job)
        return nodes * self.gpus_per_node
