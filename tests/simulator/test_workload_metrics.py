"""Workload generators, traces and metric definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfmodel.analysis.simulate import save_trace
from simulator import (EngineConfig, LengthDistribution, LinearStepCost, arrival_times, load_trace, make_requests,
                       simulate)
from simulator.metrics import weighted_percentile


def test_length_distributions_have_the_requested_means():
    rng = np.random.default_rng(0)
    assert LengthDistribution.fixed(128).sample(5, rng).tolist() == [128] * 5
    u = LengthDistribution.uniform(10, 20).sample(20000, rng)
    assert u.min() == 10 and u.max() == 20
    assert LengthDistribution.normal(300, 50).sample(20000, rng).mean() == pytest.approx(300, rel=0.01)
    assert LengthDistribution.lognormal(500, 0.6).sample(50000, rng).mean() == pytest.approx(500, rel=0.02)
    clipped = LengthDistribution.lognormal(500, 1.0, max_tokens=800).sample(1000, rng)
    assert clipped.max() <= 800 and clipped.min() >= 1
    with pytest.raises(ValueError, match="unknown length distribution"):
        LengthDistribution(kind="zipf")


def test_lengths_from_file(tmp_path):
    path = tmp_path / "lengths.txt"
    path.write_text("3\n5\n7\n")
    d = LengthDistribution.from_file(path)
    assert set(d.sample(100, np.random.default_rng(1)).tolist()) <= {3, 5, 7}


def test_arrivals_offline_poisson_and_bursty():
    rng = np.random.default_rng(0)
    assert arrival_times(4, rng).tolist() == [0.0] * 4
    poisson = arrival_times(20000, rng, request_rate=10.0)
    gaps = np.diff(poisson)
    assert poisson[0] == 0.0
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)          # exponential: CV = 1
    bursty = np.diff(arrival_times(20000, rng, request_rate=10.0, burstiness=0.25))
    assert bursty.mean() == pytest.approx(0.1, rel=0.05)
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.08)       # gamma: CV = 1/sqrt(shape)


def test_workloads_are_deterministic_under_a_seed():
    def make(seed):
        return make_requests(50, LengthDistribution.lognormal(100, 0.5), LengthDistribution.uniform(5, 50),
                             np.random.default_rng(seed), request_rate=3.0)
    assert make(1) == make(1)
    assert make(1) != make(2)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_trace_round_trip(tmp_path, suffix):
    reqs = make_requests(20, LengthDistribution.uniform(5, 50), LengthDistribution.uniform(5, 50),
                         np.random.default_rng(0), request_rate=2.0)
    path = tmp_path / f"trace{suffix}"
    save_trace(reqs, path)
    assert load_trace(path) == reqs


def test_trace_with_vllm_style_column_names(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp,input_len,output_len\n10.5,100,20\n11.0,50,5\n")
    reqs = load_trace(path)
    assert [(r.arrival_s, r.num_prompt_tokens, r.num_output_tokens) for r in reqs] == [(0.0, 100, 20), (0.5, 50, 5)]


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_weighted_percentile_equals_numpy_on_the_expanded_list(q):
    rng = np.random.default_rng(q)
    values = rng.random(30)
    weights = rng.integers(0, 5, 30)
    expanded = np.repeat(values, weights)
    assert weighted_percentile(values, weights, q) == pytest.approx(np.percentile(expanded, q))


def test_metrics_follow_vllm_definitions():
    reqs = make_requests(200, LengthDistribution.uniform(20, 200), LengthDistribution.uniform(1, 60),
                         np.random.default_rng(0), request_rate=5.0)
    cfg = EngineConfig(max_num_seqs=16, max_num_batched_tokens=512, num_kv_blocks=2000)
    r = simulate(reqs, cfg, LinearStepCost())
    m, q = r.metrics, r.requests
    duration = q.finish_s.max() - q.sent_s.min()
    assert m.elapsed_s == pytest.approx(duration)
    assert m.requests_per_second == pytest.approx(200 / duration)
    assert m.tokens_per_second == pytest.approx((q.num_prompt_tokens.sum() + q.num_output_tokens.sum()) / duration)
    assert m.output_tokens_per_second == pytest.approx(q.num_output_tokens.sum() / duration)
    assert m.ttft_s_mean == pytest.approx(np.mean(q.first_token_s - q.sent_s))
    assert m.ttft_s_p99 == pytest.approx(np.percentile(q.first_token_s - q.sent_s, 99))
    multi = q.num_output_tokens > 1
    tpot = (q.e2e_s - q.ttft_s)[multi] / (q.num_output_tokens[multi] - 1)
    assert m.tpot_s_mean == pytest.approx(tpot.mean())
    assert m.e2e_s_median == pytest.approx(np.median(q.e2e_s))
    # one ITL per token after the first; their sum per request is e2e - ttft
    assert r.itl_count.sum() == (q.num_output_tokens - 1).sum()
    assert np.dot(r.itl_gap_s, r.itl_count) == pytest.approx((q.e2e_s - q.ttft_s).sum())
    assert m.to_vllm_dict()["mean_ttft_ms"] == pytest.approx(m.ttft_s_mean * 1e3)
    assert not math.isnan(m.itl_s_p99)
