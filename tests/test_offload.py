"""KV offload to host memory (perfmodel.cost.offload): capacity, transfer cost, and when it helps or hurts."""

import dataclasses

import numpy as np
import pytest

from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.cost.offload import NEEDS_PP, OffloadStepCost, host_kv_bytes_per_gpu, with_offload
from perfmodel.cost.coefficients import Coefficients, Profile
from perfmodel.analysis.predict import Scenario, predict_layout
from perfmodel.analysis.simulate import simulate_offline
from simulator.batch import BatchStats, LinearStepCost


def batch(prefill=0, decode=0, prefill_ctx=0, decode_ctx=0):
    return BatchStats(num_prefill_tokens=prefill, num_decode_tokens=decode, prefill_attention_pairs=0.0,
                      prefill_context_tokens=prefill_ctx, decode_context_tokens=decode_ctx,
                      num_sampled_tokens=decode, num_seqs=decode + (1 if prefill else 0))


def test_transfer_moves_resident_kv_in_and_new_kv_out():
    inner = LinearStepCost(fixed_s=1e-3, per_prefill_token_s=0, per_decode_context_token_s=0, per_decode_token_s=0,
                           num_stages=4)
    cost = OffloadStepCost(inner, kv_bytes_per_token_per_gpu=1000.0, host_link_bandwidth_bytes_per_s=1e9,
                           host_link_latency_s=1e-6)
    b = batch(prefill=100, decode=10, prefill_ctx=300, decode_ctx=5000)  # 200 computed prompt tokens resident
    expected = 1e-6 + (5000 + 200 + 100 + 10) * 1000.0 / 1e9
    assert cost.transfer_time_s(b) == pytest.approx(expected)
    assert cost(b) == pytest.approx(max(1e-3, expected)) and cost.num_stages == 4
    assert cost(batch(decode=1, decode_ctx=10)) == pytest.approx(1e-3)  # hidden behind compute
    arrays = BatchStats(**{f.name: np.array([getattr(b, f.name)] * 3) for f in dataclasses.fields(BatchStats)})
    np.testing.assert_allclose(cost(arrays), [cost(b)] * 3)
    assert cost.transfer_time_s(batch()) == 0.0


def test_capacity_adds_host_blocks_and_needs_pipeline_stages():
    s = Scenario.build(model="llama-3.1-70b", hardware="hgx-h200")
    layout = Layout(tp=1, pp=4)
    plan = s.memory(layout)
    offloaded = with_offload(plan, layout, s.cluster, s.engine.block_size, 0.5)
    host_blocks = int(host_kv_bytes_per_gpu(s.cluster, 0.5) // (plan.kv_bytes_per_token * s.engine.block_size))
    assert offloaded.num_gpu_blocks == plan.num_gpu_blocks + host_blocks
    assert offloaded.kv_cache_tokens == offloaded.num_gpu_blocks * s.engine.block_size and offloaded.fits
    assert host_kv_bytes_per_gpu(s.cluster, 0.5) == pytest.approx(0.5 * 2 * 2**40 / 8)
    flat = with_offload(plan, Layout(tp=4), s.cluster, s.engine.block_size)
    assert not flat.fits and flat.reason == NEEDS_PP
    with pytest.raises(UserError, match="host-fraction"):
        Scenario.build(kv_offload=True, kv_offload_host_fraction=1.5)


def test_offload_scenario_marks_layouts_without_pipeline_as_not_fitting():
    s = Scenario.build(model="llama-3.1-70b", hardware="hgx-h200", kv_offload=True)
    p = predict_layout(s, Layout(tp=4))
    assert not p.fits and "pipeline-parallel-size >= 2" in p.reason
    with pytest.raises(UserError, match="pipeline-parallel-size"):
        s.step_cost(Layout(tp=4))


DATASHEET = Profile(name="defaults", gpu=None, coefficients=Coefficients())


def _throughputs(**kwargs):
    """Simulated offline output tokens/s and mean batch without and with offload, 70B on H200, PP=4."""
    out = []
    for offload in (False, True):
        s = Scenario.build(model="llama-3.1-70b", hardware="hgx-h200", kv_offload=offload, **kwargs)
        s = s.with_(profile=DATASHEET)  # fixed coefficients: the scenario is tuned to a tiny KV cache
        m = simulate_offline(s, Layout(tp=1, pp=4))
        out.append((m.output_tokens_per_second, m.mean_batch_size))
    return out


def test_offload_helps_when_kv_capacity_limits_the_batch():
    # A large model squeezed onto its GPUs: the GPU KV cache holds about 30 requests of 1000 tokens, so the
    # four micro-batches are small and the weights are read for few tokens; host memory lifts the limit and
    # the transfer of short contexts still hides mostly behind the weight reads.
    (base, base_batch), (off, off_batch) = _throughputs(
        gpu_memory_utilization=0.269, max_model_len=2048, max_num_batched_tokens=2048, max_num_seqs=256,
        input_len=500, output_len=500, num_prompts=256)
    assert off_batch > 3 * base_batch
    assert off > 1.15 * base


def test_offload_hurts_when_pcie_traffic_dominates():
    # Plenty of GPU KV and long contexts: every step would copy GBs of KV over PCIe (63 GB/s vs 4.8 TB/s HBM).
    (base, _), (off, _) = _throughputs(max_model_len=8192, input_len=4000, output_len=1000, num_prompts=256)
    assert off < 0.2 * base
