"""Step-cost model: hand-calculated FLOPs and bytes, roofline regimes, and monotonicity."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hardware import load_hardware
from perfmodel.cost.coefficients import Coefficients
from perfmodel.cost.step import StepCostModel
from perfmodel.layout import Layout
from perfmodel.model.shape import load_model
from perfmodel.model.precision import resolve_precision
from simulator.batch import BatchStats

H200 = load_hardware("h200-sxm")
LLAMA8 = load_model("llama-3.1-8b")
PREC = resolve_precision(LLAMA8, H200.gpu)
# No efficiency losses and no overheads: the roofline alone.
IDEAL = Coefficients(gemm_compute_efficiency=1.0, gemm_half_efficiency_tokens=1.0, memory_efficiency=1.0,
                     attention_compute_efficiency=1.0, attention_memory_efficiency=1.0, step_overhead_s=0.0,
                     per_seq_overhead_s=0.0, eager_layer_overhead_s=0.0)


def batch(prefill=0, decode=0, pairs=0.0, prefill_ctx=0, decode_ctx=0, sampled=0, seqs=0):
    return BatchStats(num_prefill_tokens=prefill, num_decode_tokens=decode, prefill_attention_pairs=pairs,
                      prefill_context_tokens=prefill_ctx, decode_context_tokens=decode_ctx,
                      num_sampled_tokens=sampled, num_seqs=seqs)


def cluster_with(**gpu_changes):
    return dataclasses.replace(H200, gpu=dataclasses.replace(H200.gpu, **gpu_changes))


def test_large_prefill_gemms_are_compute_bound_at_hand_computed_flops():
    fast_memory = cluster_with(memory_bandwidth_bytes_per_s=1e18)
    cost = StepCostModel(LLAMA8, fast_memory, Layout(tp=1), PREC, IDEAL)
    m = 8192
    # per layer: qkv 4096 x 6144, o 4096 x 4096, gate_up 4096 x 28672, down 14336 x 4096
    flops = 2 * m * (4096 * 6144 + 4096 * 4096 + 4096 * 28672 + 14336 * 4096)
    eff = m / (m + 1.0)
    assert cost.gemm_time_s(m) == pytest.approx(flops / (989.4e12 * eff), rel=1e-6)


def test_single_decode_gemms_are_memory_bound_at_weight_bytes():
    cost = StepCostModel(LLAMA8, H200, Layout(tp=1), PREC, IDEAL)
    weights = 2 * (4096 * 6144 + 4096 * 4096 + 4096 * 28672 + 14336 * 4096)
    activations = 2 * ((4096 + 6144) + (4096 + 4096) + (4096 + 28672) + (14336 + 4096))
    assert cost.gemm_time_s(1) == pytest.approx((weights + activations) / 4.8e12, rel=1e-6)


def test_decode_attention_reads_every_kv_token():
    cost = StepCostModel(LLAMA8, H200, Layout(tp=1), PREC, IDEAL)
    # 64 sequences with 1000 tokens of context: K and V, 8 heads x 128 x 2 bytes each
    kv_bytes = 64 * 1000 * 2 * 8 * 128 * 2
    assert cost.attention_time_s(batch(decode=64, decode_ctx=64_000)) == pytest.approx(kv_bytes / 4.8e12, rel=1e-6)


def test_prefill_attention_flops():
    fast_memory = cluster_with(memory_bandwidth_bytes_per_s=1e18)
    cost = StepCostModel(LLAMA8, fast_memory, Layout(tp=1), PREC, IDEAL)
    n = 4096
    pairs = n * (n + 1) / 2
    flops = 4 * pairs * 128 * 32
    assert cost.attention_time_s(batch(prefill=n, pairs=pairs, prefill_ctx=n)) == pytest.approx(
        flops / 989.4e12, rel=1e-6)


def test_lm_head_only_for_sampled_tokens():
    cost = StepCostModel(LLAMA8, H200, Layout(tp=1), PREC, IDEAL)
    a = cost.breakdown(batch(prefill=4000, pairs=1e6, prefill_ctx=4000, sampled=1, seqs=1))["lm_head_s"]
    b = cost.breakdown(batch(prefill=4000, pairs=1e6, prefill_ctx=4000, sampled=4000, seqs=4000))["lm_head_s"]
    assert a == pytest.approx(128256 * 4096 * 2 / 4.8e12, rel=1e-3)  # one row: reading the weights dominates
    assert b == pytest.approx(2 * 4000 * 4096 * 128256 / (989.4e12 * 4000 / 4001), rel=1e-6)  # compute-bound


def test_tensor_parallel_adds_two_allreduces_per_layer():
    cost1 = StepCostModel(LLAMA8, H200, Layout(tp=1), PREC, Coefficients())
    cost2 = StepCostModel(LLAMA8, H200, Layout(tp=2), PREC, Coefficients())
    b = batch(decode=128, decode_ctx=128 * 500, sampled=128, seqs=128)
    assert cost1.breakdown(b)["allreduce_s"] == 0
    assert cost2.breakdown(b)["allreduce_s"] > 0
    assert cost2.breakdown(b)["gemm_s"] < cost1.breakdown(b)["gemm_s"]


def test_pipeline_stage_has_its_share_of_layers():
    one = StepCostModel(LLAMA8, H200, Layout(tp=1, pp=1), PREC, Coefficients())
    two = StepCostModel(LLAMA8, H200, Layout(tp=1, pp=2), PREC, Coefficients())
    b = batch(decode=64, decode_ctx=64 * 300, sampled=64, seqs=64)
    assert two.num_stages == 2
    assert two.breakdown(b)["gemm_s"] == pytest.approx(one.breakdown(b)["gemm_s"] / 2)
    assert two.breakdown(b)["pipeline_send_s"] > 0


def test_a_stage_sends_the_hidden_states_and_the_residual():
    from perfmodel.cost import comm

    two = StepCostModel(LLAMA8, H200, Layout(tp=1, pp=2), PREC, Coefficients())
    b = batch(prefill=1000, pairs=1000 * 1001 / 2, prefill_ctx=1000, sampled=1, seqs=1)
    vector_bytes = 1000 * LLAMA8.hidden_size * PREC.activation_bytes
    assert two.breakdown(b)["pipeline_send_s"] == pytest.approx(
        comm.p2p_time_s(2 * vector_bytes, two._pp_bw, two._pp_latency))
    # TP 2: each rank sends half on its own link, then the receiving pair all-gathers the whole
    tp2 = StepCostModel(LLAMA8, H200, Layout(tp=2, pp=2), PREC, Coefficients())
    gather = comm.allgather_time_s(2 * vector_bytes, 2, tp2._tp_bw, tp2._tp_hop_latency,
                                   Coefficients().allreduce_bandwidth_efficiency)
    assert tp2.breakdown(b)["pipeline_send_s"] == pytest.approx(
        comm.p2p_time_s(vector_bytes, tp2._pp_bw, tp2._pp_latency) + gather)
    assert 0 < gather < comm.allreduce_time_s(2 * vector_bytes, 2, tp2._tp_bw, tp2._tp_hop_latency)


def test_pipeline_slices_cross_nodes_on_the_nodes_nics():
    from perfmodel.cost import comm

    taiwania = load_hardware("taiwania2")  # one EDR port per node: the 8 slices share it
    assert comm.pipeline_send_paths(taiwania, 8, spans_nodes=True) == 1
    assert comm.pipeline_send_paths(taiwania, 4, spans_nodes=False) == 4
    assert comm.pipeline_send_paths(load_hardware("hgx-h200"), 8, spans_nodes=True) == min(
        8, load_hardware("hgx-h200").nics_per_node)


def test_eager_mode_costs_more():
    b = batch(decode=8, decode_ctx=8 * 100, sampled=8, seqs=8)
    graphs = StepCostModel(LLAMA8, H200, Layout(tp=1), PREC, Coefficients())(b)
    eager = StepCostModel(LLAMA8, H200, Layout(tp=1), PREC, Coefficients(), enforce_eager=True)(b)
    assert eager == pytest.approx(graphs + 32 * Coefficients().eager_layer_overhead_s)


def test_array_batches_equal_scalar_batches():
    cost = StepCostModel(LLAMA8, H200, Layout(tp=2, pp=2), PREC, Coefficients())
    rows = [batch(prefill=p, decode=d, pairs=p * 50.0, prefill_ctx=p, decode_ctx=d * 700, sampled=d + 1, seqs=d + 1)
            for p, d in [(0, 1), (512, 30), (8192, 0), (100, 255)]]
    arrays = BatchStats(**{f.name: np.array([getattr(r, f.name) for r in rows])
                           for f in dataclasses.fields(BatchStats)})
    assert np.allclose(cost(arrays), [cost(r) for r in rows])


@settings(max_examples=40, deadline=None)
@given(decode=st.integers(1, 512), context=st.integers(1, 8000), prefill=st.integers(0, 8192),
       scale=st.floats(1.01, 10.0), tp=st.sampled_from([1, 2, 4, 8]))
def test_higher_bandwidth_is_never_slower(decode, context, prefill, scale, tp):
    b = batch(prefill=prefill, decode=decode, pairs=prefill * 100.0, prefill_ctx=prefill,
              decode_ctx=decode * context, sampled=decode, seqs=decode)
    base = StepCostModel(LLAMA8, H200, Layout(tp=tp), PREC, Coefficients())(b)
    faster_hbm = cluster_with(memory_bandwidth_bytes_per_s=4.8e12 * scale)
    assert StepCostModel(LLAMA8, faster_hbm, Layout(tp=tp), PREC, Coefficients())(b) <= base
    faster_link = dataclasses.replace(H200, intra_node_link=dataclasses.replace(
        H200.intra_node_link, bandwidth_bytes_per_s=H200.intra_node_link.bandwidth_bytes_per_s * scale))
    assert StepCostModel(LLAMA8, faster_link, Layout(tp=tp), PREC, Coefficients())(b) <= base


def _v100_gptq_cost(layout: Layout, coefficients: Coefficients = IDEAL, **kwargs) -> StepCostModel:
    cluster = load_hardware("taiwania2")
    model = load_model(str(Path(__file__).parents[1] / "data/taiwania/qwen2.5-72b-instruct-gptq-int4"))
    precision = resolve_precision(model, cluster.gpu, vllm_version="0.7.0")
    assert precision.quant_kernel == "gptq_exllama"
    return StepCostModel(model, cluster, layout, precision, coefficients, **kwargs)


def test_exllama_kernel_is_memory_bound_at_one_row_and_rereads_per_8_rows():
    # the exllama kernel multiplies on the CUDA cores (no tile quantisation): one row only streams the int4
    # weights; rows 9..16 read them a second time
    cost = _v100_gptq_cost(Layout(tp=8), IDEAL.replace(exllama_memory_efficiency=1.0, exllama_reread_fraction=1.0,
                                                       exllama_compute_efficiency=1.0))
    one, eight, nine = cost.gemm_time_s(1), cost.gemm_time_s(8), cost.gemm_time_s(9)
    assert eight == pytest.approx(one, rel=0.02)  # (the activations' bytes grow with the rows)
    assert nine == pytest.approx(2 * one, rel=0.03)


def test_v0_pipeline_splits_cpu_time_and_the_result_s_return():
    c = Coefficients(step_overhead_s=5e-3, per_seq_overhead_s=1e-4, pp_step_overhead_s=2e-3,
                     pp_per_seq_overhead_s=5e-5)
    b = batch(decode=4, decode_ctx=4000, sampled=4, seqs=4)
    v0 = _v100_gptq_cost(Layout(tp=8, pp=2), c, engine_generation="v0", cuda_graph_batch_sizes=(1, 2, 4, 8))
    prep_s, last_only_s, host_s = v0.stage_split_s(b)
    assert prep_s == pytest.approx(5e-3 + 4 * 1e-4)  # every stage prepares the whole batch
    assert host_s == pytest.approx(2e-3 + 4 * 5e-5)  # the Ray call and each sequence's metadata in it
    assert last_only_s == pytest.approx(float(v0.lm_head_time_s(4)))
    assert v0.overhead_time_s(b) == pytest.approx(5.4e-3)
    v1 = _v100_gptq_cost(Layout(tp=8, pp=2), c)  # V1: every PP rank prepares the whole batch too
    assert v1.stage_split_s(b) == (0.0, 0.0, 0.0)
    assert v1.overhead_time_s(b) == pytest.approx(5.4e-3)


def test_tp8_on_a_cube_mesh_pays_the_nccl_latency():
    c = Coefficients(allreduce_latency_s=1e-6, nccl_allreduce_latency_s=50e-6)
    tp8, tp4 = _v100_gptq_cost(Layout(tp=8), c), _v100_gptq_cost(Layout(tp=4), c)
    c_slow_custom = c.replace(allreduce_latency_s=30e-6)
    assert _v100_gptq_cost(Layout(tp=8), c_slow_custom).allreduce_time_s(1) == tp8.allreduce_time_s(1)
    assert _v100_gptq_cost(Layout(tp=4), c_slow_custom).allreduce_time_s(1) > tp4.allreduce_time_s(1)


def test_fused_moe_efficiency_slows_the_expert_gemms_only():
    """The expert GEMMs take 1 / fused_moe_efficiency of their roofline time; the router, attention and the
    dense projections do not change; a dense model is unaffected."""
    mixtral = load_model("mixtral-8x7b")
    prec = resolve_precision(mixtral, H200.gpu)
    half = IDEAL.replace(fused_moe_efficiency=0.5)
    full, slow = (StepCostModel(mixtral, H200, Layout(tp=1), prec, c) for c in (IDEAL, half))
    experts = sum(1 for g in full._gemms if g.num_experts > 1)
    assert experts == 2  # gate_up and down
    for m in (1, 64, 4096):
        flops_rate = H200.gpu.peak_flops_per_s[prec.gemm_flops_dtype] * full._compute_efficiency(m)
        expert_s = sum(float(np.maximum(m * g.flops_per_token / flops_rate,
                                        (g.num_experts * (1 - (1 - g.experts_per_token / g.num_experts) ** m)
                                         * g.weight_bytes + m * g.activation_bytes_per_token)
                                        / H200.gpu.memory_bandwidth_bytes_per_s))
                       for g in full._gemms if g.num_experts > 1)
        assert slow.gemm_time_s(m) - full.gemm_time_s(m) == pytest.approx(expert_s, rel=1e-9)
    dense = [StepCostModel(LLAMA8, H200, Layout(tp=1), PREC, c).gemm_time_s(64) for c in (IDEAL, half)]
    assert dense[0] == dense[1]


QWEN72_GPTQ = Path(__file__).parents[1] / "data/taiwania/qwen2.5-72b-instruct-gptq-int4"


def test_v0_elementwise_kernels_move_hand_counted_bytes_and_v1_leaves_them_to_inductor():
    from perfmodel.cost.step import elementwise_layer
    from perfmodel.engine.releases import EngineGeneration

    v100 = load_hardware("taiwania2")
    qwen = load_model(str(QWEN72_GPTQ))
    p = resolve_precision(qwen, v100.gpu, quantization="gptq", vllm_version="0.7.0")
    # per layer and token on one GPU at TP8 (fp16): two fused add+RMSNorms read and write hidden and residual
    # (2 x 4 x 8192), rotary on 8 query + 1 KV heads of 128 in place (2 x 9 x 128), the KV cache write reads and
    # writes 1 K and 1 V head (2 x 128 x 2), the attention output copy (2 x 8 x 128), SiLU-and-mul reads gate and
    # up and writes 29696 / 8 (3 x 3712), GPTQ adds the QKV bias in place (2 x (8 + 2) x 128)
    elements = 2 * 4 * 8192 + 2 * 9 * 128 + 2 * 128 * 2 + 2 * 8 * 128 + 3 * 3712 + 2 * 10 * 128
    layer = elementwise_layer(qwen, p, tp=8)
    assert layer.kernels == 7 and layer.bytes_per_token == pytest.approx(2 * elements)
    c = Coefficients(elementwise_memory_efficiency=0.5, elementwise_kernel_fixed_s=3e-6)
    v0 = StepCostModel(qwen, v100, Layout(tp=8), p, c, engine_generation=EngineGeneration.V0)
    assert v0.elementwise_time_s(498) == pytest.approx(7 * 3e-6 + 498 * 2 * elements / (0.5 * 900e9))
    step = batch(prefill=498, pairs=498 * 499 / 2, prefill_ctx=498, sampled=1, seqs=1)
    assert v0.breakdown(step)["elementwise_s"] == pytest.approx(80 * v0.elementwise_time_s(498))
    assert v0(step) == pytest.approx(sum(v0.breakdown(step).values()))
    v1 = StepCostModel(qwen, v100, Layout(tp=8), p, c, engine_generation=EngineGeneration.V1)
    assert v1.breakdown(step)["elementwise_s"] == 0.0
    assert v0(step) - v1(step) == pytest.approx(80 * v0.elementwise_time_s(498))


def test_cohere_norms_without_the_residual_and_adds_it_in_two_eager_adds():
    from perfmodel.cost.step import elementwise_layer

    v100 = load_hardware("taiwania2")
    cr = load_model("command-r-plus-gptq")
    p = resolve_precision(cr, v100.gpu, vllm_version="0.7.0")
    assert cr.parallel_attn_mlp and cr.qk_norm and cr.num_norms_per_layer == 1
    q, kv, d = cr.num_attention_heads / 8, max(1, cr.num_kv_heads // 8), cr.head_dim
    # one LayerNorm (read, write), two adds (2 read + 1 write each), rotary and the Q/K norms on q + kv heads, the
    # cache write, the attention output copy, SiLU-and-mul; no QKV bias
    elements = (2 + 6) * cr.hidden_size + 2 * 2 * (q + kv) * d + 2 * kv * d * 2 + 2 * q * d + 3 * cr.intermediate_size / 8
    layer = elementwise_layer(cr, p, tp=8)
    assert layer.kernels == 1 + 2 + 4 + 2 and layer.bytes_per_token == pytest.approx(2 * elements)
