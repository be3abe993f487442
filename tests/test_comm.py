"""α–β collective costs and the ring bandwidth of TP groups over real links."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware import list_clusters, load_hardware
from hardware.ring_links import RING_LINKS
from perfmodel.cost.comm import (
    allreduce_time_s,
    custom_allreduce_applies,
    link_for_group,
    mesh_ring_links,
    p2p_link,
    p2p_time_s,
    solve_mesh_ring_links,
    tp_group_bandwidth_bytes_per_s,
)

NVLINK2_BYTES_PER_S = 25e9


def test_allreduce_hand_computed():
    # n=4, 1 MB, 100 GB/s, 2 us: 2*3*2us + 2*3/4 * 1e6/100e9 = 12 us + 15 us
    assert allreduce_time_s(1e6, 4, 100e9, 2e-6) == pytest.approx(27e-6)
    # n=8, 16 MiB, 450 GB/s at 80 %: 14*1.9us + 14/8 * 16777216 / 360e9
    expected = 14 * 1.9e-6 + 14 / 8 * 16777216 / 360e9
    assert allreduce_time_s(16777216, 8, 450e9, 1.9e-6, bandwidth_efficiency=0.8) == pytest.approx(expected)
    # n=2: 2 steps, half the buffer each way twice = the whole buffer
    assert allreduce_time_s(50e9, 2, 50e9, 0.0) == pytest.approx(1.0)


def test_allreduce_trivial_cases():
    assert allreduce_time_s(1e9, 1, 100e9, 1e-6) == 0.0
    assert allreduce_time_s(0, 8, 100e9, 1e-6) == 0.0


def test_allreduce_accepts_arrays():
    sizes = np.array([0.0, 1e6, 2e6])
    times = allreduce_time_s(sizes, 4, 100e9, 2e-6)
    assert isinstance(times, np.ndarray) and times.shape == (3,)
    assert times[0] == 0.0
    assert times[1] == pytest.approx(27e-6)
    assert times[2] == pytest.approx(12e-6 + 30e-6)
    assert np.all(allreduce_time_s(sizes, 1, 100e9, 2e-6) == 0.0)


def test_allreduce_rejects_nonsense():
    with pytest.raises(ValueError):
        allreduce_time_s(1e6, 0, 100e9, 1e-6)
    with pytest.raises(ValueError):
        allreduce_time_s(1e6, 2, 0.0, 1e-6)
    with pytest.raises(ValueError):
        allreduce_time_s(-1.0, 2, 1e9, 1e-6)


def test_p2p_hand_computed():
    assert p2p_time_s(12.5e6, 12.5e9, 4e-6) == pytest.approx(1e-3 + 4e-6)
    assert p2p_time_s(0, 12.5e9, 4e-6) == 0.0
    np.testing.assert_allclose(p2p_time_s(np.array([0.0, 25e9]), 25e9, 1e-6), [0.0, 1.0 + 1e-6])


@given(
    num_bytes=st.floats(min_value=0, max_value=1e11),
    n=st.integers(min_value=1, max_value=64),
    bw=st.floats(min_value=1e8, max_value=1e12),
    factor=st.floats(min_value=1.0, max_value=100.0),
    latency=st.floats(min_value=0, max_value=1e-4),
)
def test_higher_bandwidth_is_never_slower(num_bytes, n, bw, factor, latency):
    slow = allreduce_time_s(num_bytes, n, bw, latency)
    fast = allreduce_time_s(num_bytes, n, bw * factor, latency)
    assert fast <= slow * (1 + 1e-12)
    assert p2p_time_s(num_bytes, bw * factor, latency) <= p2p_time_s(num_bytes, bw, latency) * (1 + 1e-12)


@given(num_bytes=st.floats(min_value=1, max_value=1e11), n=st.integers(min_value=2, max_value=64))
def test_more_bytes_or_latency_is_never_faster(num_bytes, n):
    base = allreduce_time_s(num_bytes, n, 100e9, 1e-6)
    assert allreduce_time_s(num_bytes * 2, n, 100e9, 1e-6) >= base
    assert allreduce_time_s(num_bytes, n, 100e9, 2e-6) >= base


# --- hybrid cube-mesh ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def taiwania2():
    return load_hardware("taiwania2")


def test_cube_mesh_tp2_on_double_link_pair(taiwania2):
    assert tp_group_bandwidth_bytes_per_s(taiwania2, 2, spans_nodes=False) >= 2 * NVLINK2_BYTES_PER_S


def test_cube_mesh_tp8_bounded_by_six_links(taiwania2):
    # All 8 GPUs: three edge-disjoint Hamiltonian cycles, each run in both directions -> at most 6 links.
    tp8 = tp_group_bandwidth_bytes_per_s(taiwania2, 8, spans_nodes=False)
    assert tp8 <= 6 * NVLINK2_BYTES_PER_S + 1
    assert tp8 == pytest.approx(6 * NVLINK2_BYTES_PER_S)


def test_cube_mesh_subsets_are_not_a_crossbar(taiwania2):
    # A crossbar with 6 links per GPU would give every group 150 GB/s; the mesh does not.
    full = 6 * NVLINK2_BYTES_PER_S
    for tp in (2, 3, 4, 5, 6, 7):
        assert tp_group_bandwidth_bytes_per_s(taiwania2, tp, spans_nodes=False) < full
    assert tp_group_bandwidth_bytes_per_s(taiwania2, 4, spans_nodes=False) == pytest.approx(100e9)


def test_ring_packing_known_cases():
    # 4 GPUs with 2 NVLinks between every pair: 6 directed Hamiltonian cycles, 6 link-units (NCCL issue #713).
    k4 = tuple(tuple(0 if i == j else 2 for j in range(4)) for i in range(4))
    assert mesh_ring_links(k4, 4) == pytest.approx(6.0)
    # A plain 4-ring of single links: one cycle each way.
    ring = ((0, 1, 0, 1), (1, 0, 1, 0), (0, 1, 0, 1), (1, 0, 1, 0))
    assert mesh_ring_links(ring, 4) == pytest.approx(2.0)
    # No link at all between two GPUs: no NVLink ring.
    assert mesh_ring_links(((0, 0), (0, 0)), 2) == 0.0


def test_stored_ring_links_match_a_fresh_solve_of_the_catalog():
    meshes = {load_hardware(name).nvlink_matrix for name in list_clusters()} - {None}
    assert meshes, "the catalog has a hybrid cube-mesh cluster (taiwania2)"
    stale = "hardware/ring_links.py is stale: run python scripts/generate_ring_links.py"
    assert set(RING_LINKS) == meshes, stale
    for matrix in meshes:
        solved = {tp: solve_mesh_ring_links(matrix, tp) for tp in range(2, len(matrix) + 1)}
        assert RING_LINKS[matrix] == pytest.approx(solved, rel=1e-9), stale


def test_catalog_mesh_needs_no_lp_but_a_new_mesh_is_solved(taiwania2):
    # A fresh interpreter: every TP group size on Taiwania 2 is answered without importing scipy.optimize.
    code = (
        "import sys\n"
        "from hardware import load_hardware\n"
        "from perfmodel.cost.comm import link_for_group\n"
        "cluster = load_hardware('taiwania2')\n"
        "print([link_for_group(cluster, tp, spans_nodes=False)[0] for tp in range(1, 9)])\n"
        "assert 'scipy.optimize' not in sys.modules, 'scipy.optimize was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    # The same mesh minus one link is not in the table: the LP answers, and differs from the stored value.
    rows = [list(row) for row in taiwania2.nvlink_matrix]
    rows[0][3] = rows[3][0] = 1
    rewired = tuple(tuple(row) for row in rows)
    assert rewired not in RING_LINKS
    assert mesh_ring_links(rewired, 2) == pytest.approx(2.0)  # GPUs 0-4 still have a double link
    # GPU 0 now has 5 NVLinks, so all 8 GPUs get at most 5 link-units of rings, not the stored 6.
    assert mesh_ring_links(rewired, 8) == pytest.approx(5.0)


def test_cube_mesh_without_nvlink_ring_falls_back_to_pcie(taiwania2):
    import dataclasses

    no_links = tuple(tuple(0 for _ in range(8)) for _ in range(8))
    # the spec demands a matrix for a mesh; an all-zero one is legal and means "no NVLink"
    bare = dataclasses.replace(taiwania2, nvlink_matrix=no_links)
    assert tp_group_bandwidth_bytes_per_s(bare, 2, False) == taiwania2.host_to_gpu_link.bandwidth_bytes_per_s


# --- other topologies and spanning nodes --------------------------------------------------------------


def test_nvswitch_gives_full_nvlink_bandwidth():
    dgx = load_hardware("dgx-h100")
    for tp in (2, 4, 8):
        assert tp_group_bandwidth_bytes_per_s(dgx, tp, False) == pytest.approx(450e9)


def test_pcie_node_uses_pcie():
    node = load_hardware("h100-pcie")
    assert tp_group_bandwidth_bytes_per_s(node, 4, False) == node.intra_node_link.bandwidth_bytes_per_s
    assert node.intra_node_link.bandwidth_bytes_per_s < 100e9


def test_spanning_nodes_is_limited_by_nics(taiwania2):
    ib = taiwania2.inter_node_link.bandwidth_bytes_per_s
    # 16 GPUs over 2 nodes: every ring leaves each node through its one NIC.
    assert tp_group_bandwidth_bytes_per_s(taiwania2, 16, spans_nodes=True) == pytest.approx(ib)
    # 2 GPUs over 2 nodes: 8 such groups share the node's NIC.
    assert tp_group_bandwidth_bytes_per_s(taiwania2, 2, spans_nodes=True) == pytest.approx(ib / 8)
    dgx = load_hardware("dgx-h100")
    assert tp_group_bandwidth_bytes_per_s(dgx, 16, True) == pytest.approx(8 * 50e9)


def test_link_for_group_latency(taiwania2):
    bw, lat = link_for_group(taiwania2, 8, spans_nodes=False)
    assert bw == pytest.approx(150e9) and lat == taiwania2.intra_node_link.latency_s
    _, lat2 = link_for_group(taiwania2, 2, spans_nodes=True)
    assert lat2 == pytest.approx(taiwania2.inter_node_link.latency_s)
    _, lat16 = link_for_group(taiwania2, 16, spans_nodes=True)
    intra, inter = taiwania2.intra_node_link.latency_s, taiwania2.inter_node_link.latency_s
    assert lat16 == pytest.approx(inter / 15 + intra * 14 / 15)


def test_group_too_large_for_a_node(taiwania2):
    with pytest.raises(ValueError, match="spans_nodes"):
        tp_group_bandwidth_bytes_per_s(taiwania2, 16, spans_nodes=False)
    with pytest.raises(ValueError):
        tp_group_bandwidth_bytes_per_s(taiwania2, 0, spans_nodes=False)


def test_p2p_link(taiwania2):
    assert p2p_link(taiwania2, True) == (12.5e9, taiwania2.inter_node_link.latency_s)
    assert p2p_link(taiwania2, False)[0] == pytest.approx(25e9)


def test_custom_allreduce_follows_vllm_rules(taiwania2):
    # vLLM 0.7.0 CustomAllreduce: world sizes 2/4/6/8, one node, and full NVLink above 2 GPUs
    assert custom_allreduce_applies(taiwania2, 2, False)
    assert custom_allreduce_applies(taiwania2, 4, False)  # a quad of the cube-mesh is fully connected
    assert not custom_allreduce_applies(taiwania2, 8, False)  # 8 V100s are not: NCCL
    assert not custom_allreduce_applies(taiwania2, 4, True)  # across nodes
    assert not custom_allreduce_applies(taiwania2, 3, False)  # unsupported world size
    h200 = load_hardware("hgx-h200")
    assert all(custom_allreduce_applies(h200, tp, False) for tp in (2, 4, 8))
    pcie = load_hardware("g482-h100-pcie")
    assert custom_allreduce_applies(pcie, 2, False) and not custom_allreduce_applies(pcie, 4, False)
