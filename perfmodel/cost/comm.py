"""Communication cost of tensor- and pipeline-parallel inference over the real links (α–β model).

Pure functions of a :class:`hardware.ClusterSpec`; SI units (bytes, bytes/s, seconds). Bandwidths are per
direction. A collective of ``n`` GPUs moving ``B`` bytes per GPU costs ``steps·α + volume/β``.

The hybrid cube-mesh of an 8×V100 node is not a crossbar: the bandwidth of a tensor-parallel group there is the
best packing of NCCL-style rings (directed Hamiltonian cycles over NVLink) into the links between the chosen GPUs.
That packing is an LP; for the catalog's meshes it was solved once and stored in :mod:`hardware.ring_links`
(tests/test_comm.py re-solves it), so a prediction on them imports no scipy.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from hardware import ClusterSpec
from hardware.ring_links import RING_LINKS

__all__ = [
    "allreduce_time_s",
    "custom_allreduce_applies",
    "link_for_group",
    "mesh_ring_links",
    "p2p_link",
    "p2p_time_s",
    "solve_mesh_ring_links",
    "tp_group_bandwidth_bytes_per_s",
]


# ---------------------------------------------------------------------------------------------------------
# collective costs


def allreduce_time_s(
    num_bytes,
    group_size: int,
    bandwidth_bytes_per_s: float,
    latency_s: float,
    bandwidth_efficiency: float = 1.0,
):
    """Ring all-reduce time of a buffer of ``num_bytes`` on every GPU of a group of ``group_size``.

    ``t = 2(n-1)·α + 2(n-1)/n · num_bytes / (β·eff)``, with ``α = latency_s`` per ring step, ``β`` the per-GPU
    ring (bus) bandwidth in bytes/s (see :func:`tp_group_bandwidth_bytes_per_s`) and ``eff`` the fraction of it
    NCCL achieves. Reduce-scatter then all-gather: ``2(n-1)`` steps, each GPU sends ``2(n-1)/n`` of the buffer.
    Zero for ``n = 1`` or an empty buffer. ``num_bytes`` may be a numpy array (evaluated elementwise); a scalar
    gives a float.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    _check_link(bandwidth_bytes_per_s, latency_s)
    if not bandwidth_efficiency > 0:
        raise ValueError(f"bandwidth_efficiency must be positive, got {bandwidth_efficiency}")
    size = np.asarray(num_bytes, dtype=float)
    if np.any(size < 0):
        raise ValueError("num_bytes must be non-negative")
    n = group_size
    if n == 1:
        time = np.zeros_like(size)
    else:
        steps = 2 * (n - 1)
        effective_bytes_per_s = bandwidth_bytes_per_s * bandwidth_efficiency
        time = np.where(size > 0, steps * latency_s + steps / n * size / effective_bytes_per_s, 0.0)
    return float(time) if time.ndim == 0 else time


def allgather_time_s(num_bytes, group_size: int, bandwidth_bytes_per_s: float, latency_s: float,
                     bandwidth_efficiency: float = 1.0):
    """Ring all-gather of a buffer of ``num_bytes`` (the gathered size) over a group: the all-gather half of
    :func:`allreduce_time_s`, ``(n-1)·α + (n-1)/n · num_bytes / (β·eff)``."""
    return 0.5 * allreduce_time_s(num_bytes, group_size, bandwidth_bytes_per_s, latency_s, bandwidth_efficiency)


def pipeline_send_paths(cluster: ClusterSpec, tp: int, spans_nodes: bool) -> int:
    """Links the TP ranks' slices of a stage's output travel on at once (vLLM's ``send_tensor_dict`` with
    ``all_gather_group``: each rank sends 1/TP to its peer in the next stage): inside a node each rank its own
    (:func:`p2p_link`), across nodes the node's NICs, at most one per rank."""
    return max(1, min(tp, cluster.nics_per_node)) if spans_nodes else tp


def p2p_time_s(num_bytes, bandwidth_bytes_per_s: float, latency_s: float):
    """Point-to-point send time: ``α + num_bytes/β`` (seconds); zero for an empty message.

    Used for activations between pipeline stages. ``num_bytes`` may be a numpy array (elementwise).
    """
    _check_link(bandwidth_bytes_per_s, latency_s)
    size = np.asarray(num_bytes, dtype=float)
    if np.any(size < 0):
        raise ValueError("num_bytes must be non-negative")
    time = np.where(size > 0, latency_s + size / bandwidth_bytes_per_s, 0.0)
    return float(time) if time.ndim == 0 else time


def _check_link(bandwidth_bytes_per_s: float, latency_s: float) -> None:
    if not bandwidth_bytes_per_s > 0:
        raise ValueError(f"bandwidth_bytes_per_s must be positive, got {bandwidth_bytes_per_s}")
    if not latency_s >= 0:
        raise ValueError(f"latency_s must be non-negative, got {latency_s}")


# ---------------------------------------------------------------------------------------------------------
# bandwidth of a tensor-parallel group


def tp_group_bandwidth_bytes_per_s(cluster: ClusterSpec, tp: int, spans_nodes: bool) -> float:
    """Effective per-GPU ring (bus) bandwidth of a tensor-parallel group of ``tp`` GPUs, bytes/s per direction.

    Inside one node (``spans_nodes=False``):
      - ``nvswitch``: every GPU reaches the switch with all its NVLinks: ``intra_node_link`` bandwidth.
      - ``hybrid_cube_mesh``: the best placement of ``tp`` GPUs in the node; for it, the largest total rate of
        rings (directed Hamiltonian cycles over NVLink, each link carrying ``per-link bandwidth`` in each
        direction) — see :func:`mesh_ring_links`. Without any NVLink ring the group falls back to PCIe.
      - ``pcie``: the per-GPU PCIe bandwidth (``intra_node_link``); contention at the host bridge is ignored.

    Across nodes (``spans_nodes=True``): the group is spread evenly over ``m = max(2, ceil(tp/gpus_per_node))``
    nodes, ``k = tp/m`` GPUs per node. Each ring leaves every node once through a NIC, and we assume every
    GPU of a node belongs to such a group communicating at the same moment (TP groups of DP replicas step
    together), so a group gets the share ``k/gpus_per_node`` of the node's NICs:
    ``min(intra ring of k GPUs, nics_per_node · NIC bandwidth · k / gpus_per_node)``.
    """
    if tp < 1:
        raise ValueError(f"tp must be >= 1, got {tp}")
    if not spans_nodes:
        if tp > cluster.gpus_per_node:
            raise ValueError(
                f"a TP group of {tp} GPUs does not fit in a node of {cluster.gpus_per_node}; set spans_nodes=True"
            )
        return _intra_node_bandwidth(cluster, tp)
    if cluster.inter_node_link is None or cluster.nics_per_node == 0:
        raise ValueError(f"cluster {cluster.name!r} has no inter-node network")
    num_nodes = max(2, math.ceil(tp / cluster.gpus_per_node))
    per_node = tp / num_nodes
    share = per_node / cluster.gpus_per_node
    inter = cluster.nics_per_node * cluster.inter_node_link.bandwidth_bytes_per_s * share
    if per_node < 2:
        return inter
    return min(_intra_node_bandwidth(cluster, int(per_node)), inter)


def link_for_group(cluster: ClusterSpec, tp: int, spans_nodes: bool) -> tuple[float, float]:
    """``(bandwidth_bytes_per_s, latency_s)`` to pass to :func:`allreduce_time_s` for a TP group.

    The latency is the mean per-step latency of the ring: inside a node the intra-node link's; across
    ``m`` nodes, ``(m-1)/(tp-1)`` of the ring steps cross the network (NCCL's ring latency model,
    ``nInterSteps/nsteps`` in its ``tuning.cc``).
    """
    bandwidth = tp_group_bandwidth_bytes_per_s(cluster, tp, spans_nodes)
    intra_latency = _intra_latency(cluster, tp if not spans_nodes else 2)
    if not spans_nodes:
        return bandwidth, intra_latency
    num_nodes = max(2, math.ceil(tp / cluster.gpus_per_node))
    inter_fraction = min(1.0, (num_nodes - 1) / (tp - 1))
    latency = inter_fraction * cluster.inter_node_link.latency_s + (1 - inter_fraction) * intra_latency
    return bandwidth, latency


CUSTOM_ALLREDUCE_WORLD_SIZES = (2, 4, 6, 8)
"""vLLM 0.7.0 `CustomAllreduce._SUPPORTED_WORLD_SIZES` (vllm/distributed/device_communicators/custom_all_reduce.py)."""


def custom_allreduce_applies(cluster: ClusterSpec, tp: int, spans_nodes: bool) -> bool:
    """Whether vLLM all-reduces this TP group with its own one-kernel all-reduce rather than NCCL.

    vLLM 0.7.0 `CustomAllreduce.__init__` turns it off for a group that spans nodes, for a world size other
    than 2, 4, 6 or 8, and, above 2 GPUs, unless every pair of them is joined by NVLink
    (`CudaPlatform.is_full_nvlink`). On a hybrid cube-mesh the group holds the node's first ``tp`` GPUs (ranks
    in order): 4 of a quad are fully connected, 8 are not, so TP8 on 8xV100 falls back to NCCL. A PCIe node
    qualifies only with 2 GPUs (P2P assumed to work)."""
    if spans_nodes or tp not in CUSTOM_ALLREDUCE_WORLD_SIZES:
        return False
    topology = cluster.intra_node_topology
    if topology == "nvswitch" or tp == 2:
        return True
    if topology == "hybrid_cube_mesh":
        m = cluster.nvlink_matrix
        return all(m[i][j] > 0 for i in range(tp) for j in range(tp) if i != j)
    return False


def p2p_link(cluster: ClusterSpec, spans_nodes: bool) -> tuple[float, float]:
    """``(bandwidth_bytes_per_s, latency_s)`` of a point-to-point send between pipeline stages.

    Across nodes: one NIC. Inside a node: nvswitch → the per-GPU switch bandwidth; hybrid cube-mesh → one
    NVLink (stage neighbours are not guaranteed a double link; pairs without NVLink are not used by a good
    placement); pcie → the PCIe link.
    """
    if spans_nodes:
        if cluster.inter_node_link is None:
            raise ValueError(f"cluster {cluster.name!r} has no inter-node network")
        return cluster.inter_node_link.bandwidth_bytes_per_s, cluster.inter_node_link.latency_s
    link = cluster.intra_node_link
    return link.bandwidth_bytes_per_s, link.latency_s


def _intra_latency(cluster: ClusterSpec, tp: int) -> float:
    if cluster.intra_node_topology == "hybrid_cube_mesh" and tp > 1:
        if mesh_ring_links(cluster.nvlink_matrix, tp) == 0:
            return cluster.host_to_gpu_link.latency_s
    return cluster.intra_node_link.latency_s


def _intra_node_bandwidth(cluster: ClusterSpec, tp: int) -> float:
    topology = cluster.intra_node_topology
    if topology in ("nvswitch", "pcie"):
        return cluster.intra_node_link.bandwidth_bytes_per_s
    if tp == 1:
        return cluster.intra_node_link.bandwidth_bytes_per_s * cluster.gpu.nvlink_links
    links = mesh_ring_links(cluster.nvlink_matrix, tp)
    if links == 0:
        return cluster.host_to_gpu_link.bandwidth_bytes_per_s
    return links * cluster.intra_node_link.bandwidth_bytes_per_s


# ---------------------------------------------------------------------------------------------------------
# ring packing on a point-to-point NVLink mesh


@functools.lru_cache(maxsize=None)
def mesh_ring_links(nvlink_matrix: tuple[tuple[int, ...], ...], tp: int) -> float:
    """Best total ring rate, in units of one NVLink direction, for ``tp`` GPUs of a point-to-point mesh.

    :func:`solve_mesh_ring_links`, read from :data:`hardware.ring_links.RING_LINKS` when the matrix is a
    catalog one (no scipy import, no LP), solved otherwise (a user-supplied topology); cached per (matrix, tp).
    """
    _check_group_size(nvlink_matrix, tp)
    stored = RING_LINKS.get(nvlink_matrix, {}).get(tp)
    return stored if stored is not None else solve_mesh_ring_links(nvlink_matrix, tp)


def solve_mesh_ring_links(nvlink_matrix: tuple[tuple[int, ...], ...], tp: int) -> float:
    """Best total ring rate, in units of one NVLink direction, for ``tp`` GPUs of a point-to-point mesh.

    For every set of ``tp`` GPUs: enumerate the directed Hamiltonian cycles that use only NVLink-connected
    pairs; find rates ``x_c ≥ 0`` maximising ``Σ x_c`` with, for each ordered pair ``(i, j)``,
    ``Σ_{c uses i→j} x_c ≤ links(i, j)`` (a link carries one unit in each direction). The best set wins.
    ``Σ x_c`` is the bus bandwidth of ring all-reduce split over those rings (each GPU sends ``Σ x_c``).
    Exhaustive (8 GPUs: at most 5,040 cycles per set), solved with scipy's LP (seconds on 2 cores for all
    ``tp`` of an 8-GPU mesh). Returns 0 when no set of ``tp`` GPUs has an NVLink ring.

    Rings run in both directions of a link, as NCCL's search does on V100 meshes (4 GPUs with 2 NVLinks per
    pair get 6 ring channels, one per directed Hamiltonian cycle: https://github.com/NVIDIA/nccl/issues/713).
    The DGX-1 cube-mesh splits into three Hamiltonian cycles, so all 8 GPUs reach all 6 links; subsets do not.
    """
    _check_group_size(nvlink_matrix, tp)
    best = 0.0
    n = len(nvlink_matrix)
    for group in itertools.combinations(range(n), tp):
        best = max(best, _ring_packing(nvlink_matrix, group))
    return best


def _check_group_size(nvlink_matrix: tuple[tuple[int, ...], ...], tp: int) -> None:
    n = len(nvlink_matrix)
    if tp < 2 or tp > n:
        raise ValueError(f"tp must be between 2 and {n}, got {tp}")


def _ring_packing(matrix: tuple[tuple[int, ...], ...], group: tuple[int, ...]) -> float:
    first, rest = group[0], group[1:]
    cycles = []
    for order in itertools.permutations(rest):
        ring = (first, *order)
        edges = [(ring[k], ring[(k + 1) % len(ring)]) for k in range(len(ring))]
        if all(matrix[a][b] > 0 for a, b in edges):
            cycles.append(edges)
    if not cycles:
        return 0.0
    if len(group) == 2:  # the two directions of one pair: a ring of two GPUs
        a, b = group
        return float(matrix[a][b])
    pairs = sorted({edge for edges in cycles for edge in edges})
    row = {pair: k for k, pair in enumerate(pairs)}
    usage = np.zeros((len(pairs), len(cycles)))
    for c, edges in enumerate(cycles):
        for edge in edges:
            usage[row[edge], c] += 1
    capacity = np.array([matrix[a][b] for a, b in pairs], dtype=float)
    from scipy.optimize import linprog  # imported here: scipy.optimize costs ~0.5 s at start-up

    result = linprog(-np.ones(len(cycles)), A_ub=usage, b_ub=capacity, bounds=(0, None), method="highs")
    if not result.success:  # pragma: no cover - a bounded feasible LP always solves
        raise RuntimeError(f"ring packing LP failed for GPUs {group}: {result.message}")
    return float(-result.fun)


# ---- expert parallelism (issue 25) -------------------------------------------------------------------------


def expert_dispatch_combine_time_s(num_tokens, hidden_bytes_per_token: float, dp: int, bandwidth_bytes_per_s: float,
                                   latency_s: float, bandwidth_efficiency: float = 1.0):
    """One MoE layer's dispatch and combine under expert parallelism with DP replicas, vLLM's default all-to-all.

    vLLM 0.11.2 defaults ``VLLM_ALL2ALL_BACKEND`` to ``allgather_reducescatter`` (vllm/envs.py);
    ``AgRsAll2AllManager.dispatch`` all-gathers every DP rank's hidden states (and router logits) over the DP
    group and ``combine`` reduce-scatters the experts' outputs back (vllm/distributed/device_communicators/
    all2all.py). A ring all-gather plus a ring reduce-scatter of the gathered ``dp x num_tokens`` rows move what
    one ring all-reduce of that buffer moves: ``2(n-1)`` steps, ``2(n-1)/n`` of it per GPU. Zero without DP (the
    TP group already holds every token; its all-reduce is priced as for dense layers). Router logits (E floats per
    token) are left out: under 2% of the hidden states for the catalog's MoE models.
    """
    if dp <= 1:
        return 0.0 * np.asarray(num_tokens, dtype=float) if np.ndim(num_tokens) else 0.0
    gathered = np.asarray(num_tokens, dtype=float) * dp * hidden_bytes_per_token
    return allreduce_time_s(gathered, dp, bandwidth_bytes_per_s, latency_s, bandwidth_efficiency)


def dp_group_link(cluster: ClusterSpec, dp: int, spans_nodes: bool) -> tuple[float, float]:
    """``(bandwidth, latency)`` of a DP group (the same TP rank of every replica of a stage): as a TP group of
    ``dp`` GPUs, inside a node or spread over the nodes the replicas sit on."""
    if not spans_nodes and dp > cluster.gpus_per_node:
        spans_nodes = True
    return link_for_group(cluster, dp, spans_nodes)
