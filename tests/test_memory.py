"""Memory model: hand-calculated weights and KV bytes, and vLLM's KV sizing arithmetic."""

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from hardware import load_hardware
from perfmodel.cost.coefficients import Coefficients
from perfmodel.engine.args import EngineArgs
from perfmodel.layout import Layout
from perfmodel.cost.memory import kv_bytes_per_token_per_gpu, memory_plan, weight_bytes_per_gpu
from perfmodel.model.shape import load_model
from perfmodel.model.precision import resolve_precision

H200 = load_hardware("h200-sxm")
ENGINE = EngineArgs(max_num_seqs=256, max_num_batched_tokens=8192, max_model_len=4096)


def precision(model, cluster=H200, **kw):
    return resolve_precision(model, cluster.gpu, **kw)


def test_kv_bytes_per_token_llama_70b_tp8():
    m = load_model("llama-3.1-70b")
    # 2 (K, V) x 80 layers x 8 KV heads / 8 GPUs x 128 head_dim x 2 bytes
    assert kv_bytes_per_token_per_gpu(m, precision(m), Layout(tp=8)) == 2 * 80 * 1 * 128 * 2


def test_kv_heads_replicate_beyond_kv_head_count():
    m = load_model("llama-3.1-8b")  # 8 KV heads
    p = precision(m)
    assert kv_bytes_per_token_per_gpu(m, p, Layout(tp=16)) == kv_bytes_per_token_per_gpu(m, p, Layout(tp=8))


def test_fp8_kv_cache_halves_bytes():
    m = load_model("llama-3.1-8b")
    assert (kv_bytes_per_token_per_gpu(m, precision(m, kv_cache_dtype="fp8"), Layout(tp=1))
            == kv_bytes_per_token_per_gpu(m, precision(m), Layout(tp=1)) / 2)


def test_weights_llama_8b_bf16_one_gpu_is_two_bytes_per_param():
    m = load_model("llama-3.1-8b")
    assert weight_bytes_per_gpu(m, precision(m), Layout(tp=1)) == pytest.approx(2 * m.num_params(), rel=1e-6)


def test_weights_split_over_tp_and_pp():
    m = load_model("llama-3.1-70b")
    p = precision(m)
    one = weight_bytes_per_gpu(m, p, Layout(tp=1))
    assert weight_bytes_per_gpu(m, p, Layout(tp=4)) == pytest.approx(one / 4, rel=1e-6)
    # PP=2: half the layers plus one of embedding / LM head (each 128256 x 8192 x 2 bytes)
    embed = 128256 * 8192 * 2
    assert weight_bytes_per_gpu(m, p, Layout(tp=1, pp=2)) == pytest.approx((one - 2 * embed) / 2 + embed, rel=1e-3)


def test_int4_weights_are_about_a_quarter():
    m = load_model("llama-3.1-70b")
    fp16 = weight_bytes_per_gpu(m, precision(m), Layout(tp=1))
    gptq = weight_bytes_per_gpu(m, precision(m, quantization="gptq"), Layout(tp=1))
    assert 0.25 < gptq / fp16 < 0.32


def test_kv_tokens_follow_vllm_formula():
    m = load_model("llama-3.1-8b")
    c = Coefficients()
    plan = memory_plan(m, H200, Layout(tp=1), precision(m), ENGINE, c)
    kv_bytes = 0.92 * H200.gpu.memory_bytes - plan.weights_bytes - plan.activation_bytes - plan.non_torch_bytes
    assert plan.kv_cache_bytes == pytest.approx(kv_bytes)
    assert plan.num_gpu_blocks == int(kv_bytes // (131072 * 16))
    assert plan.kv_cache_tokens == plan.num_gpu_blocks * 16
    assert plan.max_concurrency == pytest.approx(plan.kv_cache_tokens / 4096)
    assert plan.fits


def test_cuda_graphs_live_outside_the_kv_budget():
    """vLLM 0.26 sizes the KV cache before capturing graphs: eager mode only drops the graphs' own memory."""
    m = load_model("llama-3.1-8b")
    graphs = memory_plan(m, H200, Layout(tp=1), precision(m), ENGINE, Coefficients())
    eager = memory_plan(m, H200, Layout(tp=1), precision(m), dataclasses.replace(ENGINE, enforce_eager=True),
                        Coefficients())
    assert eager.kv_cache_tokens == graphs.kv_cache_tokens
    assert graphs.cuda_graph_bytes > 0 and eager.cuda_graph_bytes == 0


def test_70b_does_not_fit_one_v100_and_says_why():
    v100 = load_hardware("v100-sxm2-32gb")
    m = load_model("llama-3.1-70b")
    plan = memory_plan(m, v100, Layout(tp=1), precision(m, v100), ENGINE, Coefficients())
    assert not plan.fits and "weights need" in plan.reason


def test_gemma2_sliding_layers_raise_concurrency_not_tokens():
    m = load_model("gemma-2-9b")
    engine = dataclasses.replace(ENGINE, max_model_len=8192)
    plan = memory_plan(m, H200, Layout(tp=1), precision(m), engine, Coefficients())
    assert plan.max_concurrency > plan.kv_cache_tokens / 8192


@settings(max_examples=30, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "qwen2.5-32b", "gemma-2-27b", "mixtral-8x7b"]),
       tp=st.sampled_from([1, 2, 4]), pp=st.sampled_from([1, 2, 4]), dp=st.sampled_from([1, 2, 4]))
def test_more_gpus_per_replica_never_lower_kv_capacity(model, tp, pp, dp):
    m = load_model(model)
    p = precision(m)
    c = Coefficients()
    base = memory_plan(m, H200, Layout(tp=tp, pp=pp, dp=1), p, ENGINE, c)
    # more replicas (same TP x PP): the same KV capacity per replica
    assert memory_plan(m, H200, Layout(tp=tp, pp=pp, dp=dp), p, ENGINE, c).kv_cache_tokens == base.kv_cache_tokens
    # twice the TP or twice the PP: never less per replica
    assert memory_plan(m, H200, Layout(tp=2 * tp, pp=pp), p, ENGINE, c).kv_cache_tokens >= base.kv_cache_tokens
    assert memory_plan(m, H200, Layout(tp=tp, pp=2 * pp), p, ENGINE, c).kv_cache_tokens >= base.kv_cache_tokens
