"""Layouts, the analytical estimate and predict_all."""

import dataclasses
import math

import pytest
from hypothesis import example, given, settings, strategies as st

from perfmodel.errors import UserError
from perfmodel.layout import Layout, enumerate_layouts, valid_tp_sizes
from perfmodel.analysis.predict import Scenario, predict_all, predict_layout, predictions_frame


def test_valid_tp_sizes_follow_vllm_rules():
    assert valid_tp_sizes(64, 8, 16) == [1, 2, 4, 8, 16]
    assert valid_tp_sizes(28, 4, 16) == [1, 2, 4]  # Qwen2.5-7B: 28 heads, 4 KV heads


def test_enumerate_16_gpus_covers_every_product():
    layouts = enumerate_layouts(16, num_attention_heads=64, num_kv_heads=8, num_layers=80, gpus_per_node=8)
    assert all(lay.tp * lay.pp * lay.dp == 16 for lay in layouts)
    assert Layout(tp=8, pp=2, dp=1) in layouts and Layout(tp=1, pp=1, dp=16) in layouts
    assert Layout(tp=16, pp=1, dp=1) in layouts


def test_default_prediction_ranks_layouts_for_70b_on_taiwania2():
    scenario = Scenario.build()
    predictions = predict_all(scenario, 16)
    fitting = [p for p in predictions if p.fits]
    assert fitting and not all(p.fits for p in predictions)
    assert [p.tokens_per_second for p in fitting] == sorted((p.tokens_per_second for p in fitting), reverse=True)
    assert all(p.reason for p in predictions if not p.fits)
    assert predictions[0].tokens_per_second == pytest.approx(
        predictions[0].requests_per_second * (100 + 600), rel=1e-9)
    assert list(predictions_frame(predictions).columns)[:3] == ["tp", "pp", "dp"]


def test_pinned_layout_gives_one_entry():
    predictions = predict_all(Scenario.build(), 16, tp=8, pp=2)
    assert [(p.tp, p.pp, p.dp) for p in predictions] == [(8, 2, 1)]


def test_invalid_tp_lists_valid_values():
    with pytest.raises(UserError, match="valid values: 1, 2, 4, 8"):
        predict_all(Scenario.build(), 16, tp=3)


def test_taiwania2_job_limit():
    with pytest.raises(UserError, match=r"at most 16 GPUs \(2 nodes"):
        predict_all(Scenario.build(), 32)


def test_more_replicas_more_throughput_for_small_model():
    s = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", num_prompts=2000)
    one = predict_layout(s, Layout(tp=1, dp=1))
    four = predict_layout(s, Layout(tp=1, dp=4))
    assert 3.0 < four.tokens_per_second / one.tokens_per_second <= 4.0


@settings(max_examples=25)
@example(input_len=1, output_len=1, num_prompts=257, max_num_seqs=256, static_batch=129, tp=1)  # issue 9
@given(input_len=st.integers(1, 2000), output_len=st.integers(1, 1000), num_prompts=st.integers(1, 1000),
       max_num_seqs=st.sampled_from([1, 8, 64, 256]), static_batch=st.one_of(st.none(), st.integers(1, 512)),
       tp=st.sampled_from([1, 2]))
def test_static_never_above_continuous(input_len, output_len, num_prompts, max_num_seqs, static_batch, tp):
    """Continuous batching with the static wave as its max_num_seqs (the same limit) is never slower. With a
    larger max_num_seqs it can be (issue 9: greedy waves 256 + 1 against 129 + 128; see perfmodel/analysis/estimate.py)."""
    s = Scenario.build(model="llama-3.1-8b", hardware="h200-sxm", input_len=input_len, output_len=output_len,
                       num_prompts=num_prompts, max_num_seqs=max_num_seqs)
    static = predict_layout(s.with_(batching="static", static_batch_size=static_batch), Layout(tp=tp))
    same_limit = s.with_(engine=dataclasses.replace(s.engine, max_num_seqs=static.batch_size))
    continuous = predict_layout(same_limit, Layout(tp=tp))
    assert continuous.batch_size == static.batch_size
    assert static.tokens_per_second <= continuous.tokens_per_second
    if static_batch is None or static_batch >= max_num_seqs:  # no smaller batch: the very same prediction
        assert static.tokens_per_second == predict_layout(s, Layout(tp=tp)).tokens_per_second


def test_non_fitting_layout_has_no_throughput():
    p = predict_layout(Scenario.build(), Layout(tp=1, dp=16))
    assert not p.fits and math.isnan(p.tokens_per_second)
