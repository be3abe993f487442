"""perfmodel.analysis.simulate: workloads, one layout simulated, predict's simulated ranking, the cost's fast path."""

import dataclasses
import math
import random

import numpy as np
import pytest

from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.analysis.predict import Scenario, predict_all, predict_layout
from perfmodel.analysis.simulate import build_requests, length_distribution, simulate_offline
from simulator.batch import BatchStats
from perfmodel.analysis.simulate import save_trace
from simulator.workload import LengthDistribution

SMALL = dict(model="llama-3.1-8b", hardware="hgx-h200")


def test_requests_are_deterministic_under_a_seed():
    kwargs = dict(input_len=length_distribution("lognormal", 500, 0.6), output_len=length_distribution("normal", 200),
                  num_prompts=300, request_rate=10.0, burstiness=0.5)
    a, b = build_requests(**kwargs, seed=3), build_requests(**kwargs, seed=3)
    c = build_requests(**kwargs, seed=4)
    assert a == b and a != c
    assert np.mean([r.num_prompt_tokens for r in a]) == pytest.approx(500, rel=0.15)
    assert a[0].arrival_s == 0 and a[-1].arrival_s == pytest.approx(30, rel=0.3)


def test_fixed_lengths_and_offline_arrivals():
    reqs = build_requests(input_len=100, output_len=600, num_prompts=5)
    assert [(r.arrival_s, r.num_prompt_tokens, r.num_output_tokens) for r in reqs] == [(0.0, 100, 600)] * 5


def test_lengths_are_cut_to_max_model_len():
    reqs = build_requests(input_len=LengthDistribution.lognormal(3000, 1.5),
                          output_len=LengthDistribution.lognormal(2000, 1.5), num_prompts=500, max_model_len=4096)
    assert max(r.num_prompt_tokens + r.num_output_tokens for r in reqs) <= 4096


def test_uniform_spread_is_vllm_range_ratio():
    d = length_distribution("uniform", 1000, 0.2)
    assert (d.low, d.high) == (800, 1200)


def test_trace_round_trip(tmp_path):
    reqs = build_requests(input_len=length_distribution("uniform", 300), output_len=50, num_prompts=20,
                          request_rate=4.0, seed=1)
    save_trace(reqs, tmp_path / "t.csv")
    assert build_requests(trace=tmp_path / "t.csv") == reqs


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_prompts=0), "--num-prompts"),
    (dict(request_rate=0.0), "--request-rate"),
    (dict(burstiness=-1.0), "--burstiness"),
    (dict(input_len=0), "--input-len"),
    (dict(trace="/nonexistent/trace.csv"), "cannot read trace"),
])
def test_bad_workloads_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        build_requests(**kwargs)


def test_bad_distribution_names_the_flag():
    with pytest.raises(UserError, match="--output-dist"):
        length_distribution("pareto", 100, flag="--output")


def test_closed_loop_max_concurrency_is_respected():
    s = Scenario.build(**SMALL)
    reqs = build_requests(input_len=200, output_len=length_distribution("lognormal", 100), num_prompts=200, seed=2)
    r = s.simulate(Layout(tp=1, dp=2), reqs, max_concurrency=7).requests
    events = sorted([(t, 1) for t in r.sent_s] + [(t, -1) for t in r.finish_s], key=lambda e: (e[0], e[1]))
    outstanding = np.cumsum([e[1] for e in events])
    assert outstanding.max() == 7
    assert np.all(r.sent_s >= r.arrival_s)


def test_simulation_is_deterministic_with_a_random_router():
    s = Scenario.build(**SMALL, entry_point="serve")
    reqs = build_requests(input_len=length_distribution("lognormal", 400),
                          output_len=length_distribution("lognormal", 150), num_prompts=300, request_rate=30.0, seed=5)
    a = s.simulate(Layout(tp=1, dp=4), reqs, router="random", seed=1)
    b = s.simulate(Layout(tp=1, dp=4), reqs, router="random", seed=1)
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(a.requests.replica, b.requests.replica)


def test_non_fitting_layout_and_oversized_request_are_user_errors():
    s = Scenario.build(model="llama-3.1-70b", hardware="taiwania2")
    with pytest.raises(UserError, match="does not fit"):
        s.simulate(Layout(tp=1), build_requests(num_prompts=2))
    small = Scenario.build(**SMALL, gpu_memory_utilization=0.2, max_model_len=2048)
    with pytest.raises(UserError, match="KV tokens"):
        small.simulate(Layout(tp=1), build_requests(input_len=10**6, output_len=10, num_prompts=1))


def test_offline_shortcut_equals_full_simulation():
    s = Scenario.build(**SMALL, num_prompts=301, input_len=300, output_len=200)
    layout = Layout(tp=1, dp=3)
    full = s.simulate(layout, build_requests(input_len=300, output_len=200, num_prompts=301)).metrics
    fast = simulate_offline(s, layout)
    assert fast.elapsed_s == full.elapsed_s
    assert fast.tokens_per_second == pytest.approx(full.tokens_per_second, rel=1e-12)
    assert fast.num_requests == 301


def test_predict_all_simulates_the_top_layouts_and_reranks():
    s = Scenario.build()
    analytical = predict_all(s, 16, simulate_top=0)
    simulated = predict_all(s, 16)
    assert all(p.method == "analytical" for p in analytical)
    top3 = {(p.tp, p.pp, p.dp) for p in analytical[:3]}
    assert {(p.tp, p.pp, p.dp) for p in simulated if p.method == "simulated"} == top3
    fitting = [p.tokens_per_second for p in simulated if p.fits]
    assert fitting == sorted(fitting, reverse=True)
    with pytest.raises(UserError, match="--simulate-top"):
        predict_all(s, 16, simulate_top=-1)


def test_simulated_throughput_is_close_to_the_closed_form_without_pipelines():
    s = Scenario.build(**SMALL, num_prompts=500, input_len=200, output_len=300)
    closed = predict_layout(s, Layout(tp=1))
    sim = simulate_offline(s, Layout(tp=1))
    assert sim.tokens_per_second == pytest.approx(closed.tokens_per_second, rel=0.05)


@pytest.mark.parametrize("model, hardware, layout", [
    ("llama-3.1-8b", "h200-sxm", Layout(tp=1)),
    ("gemma-2-9b", "hgx-h200", Layout(tp=2, pp=2)),
    ("mixtral-8x7b", "taiwania2", Layout(tp=8, pp=2)),
])
def test_scalar_cost_path_is_bit_identical_to_the_array_path(model, hardware, layout):
    cost = Scenario.build(model=model, hardware=hardware).step_cost(layout)
    rng = random.Random(0)
    for _ in range(200):
        p, d = rng.choice([0, rng.randint(1, 8192)]), rng.randint(0, 256)
        b = BatchStats(num_prefill_tokens=p, num_decode_tokens=d, prefill_attention_pairs=p * rng.uniform(1, 2000),
                       prefill_context_tokens=p * rng.randint(1, 3), decode_context_tokens=d * rng.randint(1, 5000),
                       num_sampled_tokens=d + rng.randint(0, 1), num_seqs=d + rng.randint(0, 2))
        arrays = BatchStats(**{f.name: np.array([getattr(b, f.name)]) for f in dataclasses.fields(BatchStats)})
        assert cost(b) == float(cost(arrays)[0]) == float(sum(cost.breakdown(b).values()))
    assert math.isfinite(cost(b))
