"""Expert parallelism (vLLM's --enable-expert-parallel, EP = TP x DP): layouts, memory split, dispatch/combine."""

import json
import math

import pytest

from hardware import load_hardware, with_nodes
from perfmodel.cost import comm
from perfmodel.cli import main
from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.cost.memory import expert_parallel_saving_bytes, weight_bytes_per_gpu
from perfmodel.scenario import Scenario
from simulator.batch import BatchStats


def _scenario(**kw):
    return Scenario.build(model="qwen3-235b-a22b", hardware="hgx-h200", nodes=2, **kw)


def test_layout_ep_is_tp_times_dp_and_prints():
    lay = Layout(tp=2, dp=8).with_expert_parallel()
    assert lay.ep == 16 and str(lay) == "TP2 PP1 DP8 EP16"
    assert str(Layout(tp=2, dp=8)) == "TP2 PP1 DP8"
    with pytest.raises(UserError):
        Layout(tp=4, dp=2, ep=6)


def test_expert_weights_split_over_ep_by_hand():
    s = _scenario()
    m, p = s.model, s.precision
    expert_params = 3 * m.hidden_size * 1536 * 128 * m.num_layers  # gate, up, down of 128 experts, 94 layers
    tp_only = weight_bytes_per_gpu(m, p, Layout(tp=1, dp=16))
    ep = weight_bytes_per_gpu(m, p, Layout(tp=1, dp=16, ep=16))
    assert tp_only - ep == pytest.approx(expert_params * 2 * (1 - 8 / 128))
    # vLLM's determine_expert_map: 128 experts over 6 ranks -> the first two hold 22
    assert expert_parallel_saving_bytes(m, p, Layout(tp=2, dp=3, ep=6)) == pytest.approx(
        expert_params * 2 * (1 / 2 - 22 / 128))


def test_ep_makes_tp1_dp16_fit_on_16_h200s():
    assert not _scenario().memory(Layout(tp=1, dp=16)).fits
    assert _scenario(expert_parallel=True).memory(Layout(tp=1, dp=16)).fits


def test_dispatch_combine_is_zero_without_dp_and_slower_across_nodes():
    assert comm.expert_dispatch_combine_time_s(64, 8192.0, 1, 450e9, 2e-6) == 0.0
    inside = comm.expert_dispatch_combine_time_s(64, 8192.0, 4, 450e9, 2e-6)
    across = comm.expert_dispatch_combine_time_s(64, 8192.0, 4, 50e9, 4e-6)
    assert 0 < inside < across
    # an all-gather plus a reduce-scatter of the gathered rows = a ring all-reduce of them
    assert inside == pytest.approx(comm.allreduce_time_s(64 * 4 * 8192.0, 4, 450e9, 2e-6))


def _decode(n):
    return BatchStats(num_prefill_tokens=0, num_decode_tokens=n, prefill_attention_pairs=0, prefill_context_tokens=0,
                      decode_context_tokens=n * 1000, num_sampled_tokens=n, num_seqs=n)


def test_ep_cost_same_flops_fewer_expert_bytes_plus_dispatch():
    s = _scenario(expert_parallel=True)
    lay = Layout(tp=2, dp=8)
    ep_cost, tp_cost = s.step_cost(lay), _scenario().step_cost(lay)
    assert ep_cost.layout.ep == 16 and tp_cost.layout.ep == 1
    # a small decode batch reads experts: each EP GPU holds 8 whole experts, each TP GPU half of all 128
    assert ep_cost.gemm_time_s(8) < tp_cost.gemm_time_s(8)
    # dispatch/combine over the DP group of 8 (across the two nodes) adds to the TP all-reduces
    assert ep_cost.allreduce_time_s(8) > tp_cost.allreduce_time_s(8) > 0
    assert math.isfinite(ep_cost(_decode(8)))


def test_ep_without_dp_keeps_tp_communication():
    lay = Layout(tp=8)
    assert _scenario(expert_parallel=True).step_cost(lay).allreduce_time_s(32) == pytest.approx(
        _scenario().step_cost(lay).allreduce_time_s(32))


def test_expert_parallel_needs_moe():
    with pytest.raises(UserError, match="mixture-of-experts"):
        Scenario.build(model="qwen3-32b", hardware="hgx-h200", expert_parallel=True)


def test_predict_qwen3_235b_on_16_h200_lists_ep_layouts(capsys):
    assert main(["predict", "--model", "qwen3-235b-a22b", "--hardware", "hgx-h200", "--nodes", "2", "--gpus", "16",
                 "--enable-expert-parallel", "--simulate-top", "0", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["expert_parallel"] is True
    assert all(r["ep"] == r["tp"] * r["dp"] for r in out["layouts"])
    assert any(r["fits"] and r["tp"] == 1 and r["dp"] == 16 for r in out["layouts"])
    assert "--enable-expert-parallel" in out["vllm_serve_command"]
