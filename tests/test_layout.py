"""Which TP x PP x DP layouts are offered, and where their replicas sit."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from perfmodel.layout import Layout, enumerate_layouts, place, placeable, valid_tp_sizes
from perfmodel.cost.memory import layers_per_stage
from perfmodel.analysis.predict import candidate_layouts
from perfmodel.scenario import Scenario

LLAMA_70B = {"num_attention_heads": 64, "num_kv_heads": 8, "num_layers": 80}


def layouts_of(num_gpus, gpus_per_node=8, **model):
    shape = {**LLAMA_70B, **model}
    return [str(lay) for lay in enumerate_layouts(num_gpus, gpus_per_node=gpus_per_node, **shape)]


def test_taiwania2_12_gpus_offers_uneven_pipelines():
    offered = {str(lay) for lay in candidate_layouts(Scenario.build(), 12)}  # llama-3.1-70b on taiwania2
    assert {"TP4 PP3 DP1", "TP2 PP3 DP2", "TP2 PP6 DP1", "TP1 PP12 DP1"} <= offered
    assert all(lay.startswith(("TP1 ", "TP2 ", "TP4 ")) for lay in offered)  # TP8 does not divide 12


def test_12_gpus_every_factorization_that_fits_two_nodes():
    assert layouts_of(12) == [
        "TP1 PP1 DP12", "TP1 PP2 DP6", "TP1 PP3 DP4", "TP1 PP4 DP3", "TP1 PP6 DP2", "TP1 PP12 DP1",
        "TP2 PP1 DP6", "TP2 PP2 DP3", "TP2 PP3 DP2", "TP2 PP6 DP1", "TP4 PP1 DP3", "TP4 PP3 DP1",
    ]


def test_16_gpus_unchanged():
    # Powers of two were offered before PP and replicas of any size were: that set must not move.
    assert layouts_of(16) == [
        "TP1 PP1 DP16", "TP1 PP2 DP8", "TP1 PP4 DP4", "TP1 PP8 DP2", "TP1 PP16 DP1", "TP2 PP1 DP8",
        "TP2 PP2 DP4", "TP2 PP4 DP2", "TP2 PP8 DP1", "TP4 PP1 DP4", "TP4 PP2 DP2", "TP4 PP4 DP1",
        "TP8 PP1 DP2", "TP8 PP2 DP1", "TP16 PP1 DP1",
    ]


def test_tp_follows_heads_not_powers_of_two():
    # Llama-2-13B: 40 heads, 40 KV heads -> TP 5 is valid; on 10 GPUs, one TP5 stage per node.
    llama2_13b = {"num_attention_heads": 40, "num_kv_heads": 40, "num_layers": 40}
    assert valid_tp_sizes(40, 40, 40) == [1, 2, 4, 5, 8, 10, 20, 40]
    assert {"TP5 PP2 DP1", "TP5 PP1 DP2", "TP2 PP5 DP1"} <= set(layouts_of(10, **llama2_13b))
    assert "TP10 PP1 DP1" not in layouts_of(10, **llama2_13b)  # a TP group over 1.25 nodes
    # KV heads replicated: 8 KV heads, TP 16 puts each on two GPUs; TP 12 neither divides nor is divided by 8.
    assert 16 in valid_tp_sizes(48, 8, 48) and 12 not in valid_tp_sizes(48, 8, 48)
    assert valid_tp_sizes(28, 4, 28) == [1, 2, 4, 28]  # Qwen2.5-7B: TP 7 and 14 would split a KV head


def test_pp_up_to_the_layer_count():
    tiny = {"num_attention_heads": 4, "num_kv_heads": 4, "num_layers": 4}
    assert [lay for lay in layouts_of(8, **tiny) if lay.startswith("TP1 ")] == [
        "TP1 PP1 DP8", "TP1 PP2 DP4", "TP1 PP4 DP2"]  # PP8 would leave stages without a layer
    assert "TP1 PP80 DP1" in layouts_of(80)


def test_replicas_are_never_split_and_tp_groups_stay_in_a_node():
    # 24 GPUs = 3 nodes of 8: eight 3-GPU replicas or four 6-GPU ones cannot avoid splitting one.
    offered = layouts_of(24)
    assert "TP1 PP3 DP8" not in offered and "TP2 PP3 DP4" not in offered
    assert "TP4 PP3 DP2" in offered  # 2 stages per node: 6 stages on 3 nodes
    # TP3: 2 groups per node; 8 stages need 4 nodes, the job has 3.
    assert not placeable(Layout(tp=3, pp=8), gpus_per_node=8)
    assert placeable(Layout(tp=3, pp=3), gpus_per_node=8)  # 2 stages on node 0, 1 on node 1
    assert not placeable(Layout(tp=12, pp=1), gpus_per_node=8) and placeable(Layout(tp=16), gpus_per_node=8)


def test_place():
    p = place(Layout(tp=4, pp=3), gpus_per_node=8)
    assert (p.nodes_per_replica, p.tp_spans_nodes, p.pp_spans_nodes) == (2, False, True)
    p = place(Layout(tp=3, pp=3), gpus_per_node=8)
    assert (p.nodes_per_replica, p.tp_spans_nodes, p.pp_spans_nodes) == (2, False, True)
    p = place(Layout(tp=2, pp=3, dp=2), gpus_per_node=8)
    assert (p.nodes_per_replica, p.tp_spans_nodes, p.pp_spans_nodes) == (1, False, False)
    p = place(Layout(tp=16, pp=2), gpus_per_node=8)
    assert (p.nodes_per_replica, p.tp_spans_nodes, p.pp_spans_nodes) == (4, True, False)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(tp_exp=st.integers(0, 3), pp=st.integers(1, 80), gpus_per_node=st.sampled_from([4, 8]))
def test_any_single_replica_with_tp_inside_a_node_is_offered(tp_exp, pp, gpus_per_node):
    tp = 2**tp_exp
    if tp > gpus_per_node:
        return
    num_gpus = tp * pp
    layouts = enumerate_layouts(num_gpus, gpus_per_node=gpus_per_node, **LLAMA_70B)
    assert Layout(tp=tp, pp=pp, dp=1) in layouts
    for lay in layouts:
        assert lay.gpus == num_gpus and lay.pp <= 80 and 64 % lay.tp == 0
        nodes = math.ceil(num_gpus / gpus_per_node)
        assert lay.tp > gpus_per_node or lay.dp * lay.pp <= nodes * (gpus_per_node // lay.tp)


def vllm_030_partition(num_layers, pp):
    """Stage sizes as vLLM 0.30 splits them (vllm/distributed/utils.py get_pp_indices): the remainder
    one layer each to the stages just before the last."""
    sizes = [num_layers // pp] * pp
    for k in range(num_layers % pp):
        sizes[-2 - k] += 1
    return sizes


@pytest.mark.parametrize("num_layers", [4, 32, 40, 46, 80, 126])
def test_memory_counts_the_most_loaded_stage(num_layers):
    for pp in range(1, num_layers + 1):
        sizes = vllm_030_partition(num_layers, pp)
        assert sum(sizes) == num_layers and min(sizes) >= 1
        assert layers_per_stage(num_layers, pp) == max(sizes)
