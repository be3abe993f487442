"""Engine-level properties: macro-step equivalence, static batching, pipeline parallelism, queues."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import (EngineConfig, LengthDistribution, LinearStepCost, Request, make_requests,
                       requests_from_arrays, simulate)

from test_scheduler_toy import ToyCost, engine

COST = LinearStepCost(fixed_s=5e-3, per_prefill_token_s=2e-5, per_decode_context_token_s=1.5e-7,
                      per_decode_token_s=5e-5)


def online(num: int, rate: float, seed: int = 0, mean_in: int = 300, mean_out: int = 100):
    rng = np.random.default_rng(seed)
    return make_requests(num, LengthDistribution.lognormal(mean_in, 0.6), LengthDistribution.lognormal(mean_out, 0.6),
                         rng, request_rate=rate)


def assert_same(a, b):
    assert a.metrics == b.metrics
    for name in ("first_token_s", "finish_s", "sent_s", "replica", "num_preemptions"):
        np.testing.assert_array_equal(getattr(a.requests, name), getattr(b.requests, name))


@pytest.mark.parametrize("case", ["offline", "online", "kv_pressure", "least_loaded", "closed_loop", "static"])
def test_macro_steps_equal_single_steps(case):
    kwargs = {}
    cfg = EngineConfig(max_num_seqs=64, max_num_batched_tokens=2048, num_kv_blocks=4000)
    if case == "offline":
        reqs = requests_from_arrays(np.zeros(100), np.full(100, 100), np.full(100, 300))
    elif case == "online":
        reqs = online(400, 20.0)
        kwargs = dict(num_replicas=2)
    elif case == "kv_pressure":
        reqs = online(300, 50.0)
        cfg = EngineConfig(max_num_seqs=64, max_num_batched_tokens=2048, num_kv_blocks=300)
    elif case == "least_loaded":
        reqs = online(400, 30.0)
        kwargs = dict(num_replicas=3, router="least_loaded")
    elif case == "closed_loop":
        reqs = online(300, float("inf"))
        kwargs = dict(num_replicas=2, max_concurrency=20)
    else:
        reqs = online(200, 10.0)
        cfg = EngineConfig(max_num_seqs=16, max_num_batched_tokens=2048, num_kv_blocks=4000, batching="static")
    macro = simulate(reqs, cfg, COST, record_timeline=True, **kwargs)
    single = simulate(reqs, cfg, COST, record_timeline=True, macro_steps=False, **kwargs)
    assert_same(macro, single)
    np.testing.assert_array_equal(macro.itl_gap_s[np.argsort(macro.itl_gap_s, kind="stable")],
                                  single.itl_gap_s[np.argsort(single.itl_gap_s, kind="stable")])
    cols = ["replica", "start_s", "end_s", "num_prefill_tokens", "num_decode_tokens", "decode_context_tokens",
            "num_seqs", "num_running", "num_waiting", "kv_usage"]
    np.testing.assert_array_equal(macro.timeline[cols].to_numpy(), single.timeline[cols].to_numpy())
    if case == "kv_pressure":
        assert macro.metrics.num_preemptions > 0
    if case == "offline":
        assert macro.metrics.num_steps == single.metrics.num_steps


def test_macro_runs_call_the_cost_far_fewer_times():
    calls = []

    class Counting(LinearStepCost):
        def __call__(self, batch):
            calls.append(len(batch))
            return LinearStepCost.__call__(self, batch)

    reqs = requests_from_arrays(np.zeros(300), np.full(300, 100), np.full(300, 600))
    cfg = EngineConfig(max_num_seqs=256, max_num_batched_tokens=8192, num_kv_blocks=20000)
    r = simulate(reqs, cfg, Counting())
    assert sum(calls) == r.metrics.num_steps
    assert len(calls) < r.metrics.num_steps / 20


def test_determinism_under_a_seed():
    a = simulate(online(300, 30.0, seed=3), engine(max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=2000),
                 COST, num_replicas=3, router="random", seed=7)
    b = simulate(online(300, 30.0, seed=3), engine(max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=2000),
                 COST, num_replicas=3, router="random", seed=7)
    assert_same(a, b)
    c = simulate(online(300, 30.0, seed=4), engine(max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=2000),
                 COST, num_replicas=3, router="random", seed=7)
    assert c.metrics != a.metrics


def test_littles_law_on_a_steady_poisson_run():
    reqs = online(4000, 20.0, seed=1)
    cfg = EngineConfig(max_num_seqs=128, max_num_batched_tokens=2048, num_kv_blocks=20000)
    r = simulate(reqs, cfg, COST, record_timeline=True)
    tl = r.timeline
    duration = r.requests.finish_s.max() - r.requests.sent_s.min()
    # L: time-average number of requests in the system (running + waiting), from the step timeline.
    in_system = tl["num_running"] + tl["num_waiting"]
    L = float(np.sum(in_system * (tl["end_s"] - tl["start_s"]))) / duration
    lam = len(reqs) / duration
    W = float(np.mean(r.requests.e2e_s))
    assert L == pytest.approx(lam * W, rel=0.05)


def test_closed_loop_concurrency_never_exceeds_its_limit():
    reqs = online(500, float("inf"), seed=2)
    cfg = EngineConfig(max_num_seqs=256, max_num_batched_tokens=4096, num_kv_blocks=20000)
    r = simulate(reqs, cfg, COST, num_replicas=2, max_concurrency=16, record_timeline=True)
    sent, done = r.requests.sent_s, r.requests.finish_s
    events = np.concatenate([np.stack([sent, np.ones_like(sent)], 1), np.stack([done, -np.ones_like(done)], 1)])
    events = events[np.lexsort((events[:, 1], events[:, 0]))]  # finishes before sends at equal times
    assert np.cumsum(events[:, 1]).max() == 16
    assert (r.timeline.groupby("start_s")["num_running"].sum() <= 16).all()
    # with 16 clients and short jobs the system stays full: running + waiting = 16 most of the time
    assert r.metrics.mean_batch_size > 6


def test_routers_balance_requests():
    reqs = online(600, 40.0)
    cfg = EngineConfig(max_num_seqs=64, max_num_batched_tokens=2048, num_kv_blocks=4000)
    rr = simulate(reqs, cfg, COST, num_replicas=3)
    assert np.bincount(rr.requests.replica).tolist() == [200, 200, 200]
    ll = simulate(reqs, cfg, COST, num_replicas=3, router="least_loaded")
    assert np.bincount(ll.requests.replica, minlength=3).min() > 150
    with pytest.raises(ValueError, match="router"):
        simulate(reqs, cfg, COST, router="fastest")


def test_dp_replicas_scale_offline_throughput():
    reqs = requests_from_arrays(np.zeros(512), np.full(512, 100), np.full(512, 200))
    cfg = EngineConfig(max_num_seqs=32, max_num_batched_tokens=2048, num_kv_blocks=4000)
    one = simulate(reqs, cfg, COST).metrics.tokens_per_second
    four = simulate(reqs, cfg, COST, num_replicas=4).metrics.tokens_per_second
    assert four == pytest.approx(4 * one, rel=0.05)


# ---- static batching --------------------------------------------------------------------------------------
def test_static_batching_pads_to_the_longest_prompt_and_output():
    reqs = [Request(0, 0.0, 10, 2), Request(1, 0.0, 30, 4)]
    cfg = engine(batching="static", static_batch_size=2)
    r = simulate(reqs, cfg, ToyCost(), record_timeline=True)
    tl = r.timeline
    # one prefill of 2 x 30 tokens (all at once), then 3 decode steps of 2 slots with padded context
    assert tl["num_prefill_tokens"].tolist() == [60, 0, 0, 0]
    assert tl["num_decode_tokens"].tolist() == [0, 2, 2, 2]
    assert tl["decode_context_tokens"].tolist() == [0, 2 * 31, 2 * 32, 2 * 33]
    assert r.requests.ttft_s.tolist() == pytest.approx([1.6, 1.6])
    assert r.requests.e2e_s.tolist() == pytest.approx([2.6, 4.6])  # r0 streams its last token at step 2
    useful = (10 + 2 - 1) + (30 + 4 - 1)
    computed = 2 * (30 + 4 - 1)
    assert r.metrics.padding_waste_fraction == pytest.approx((computed - useful) / computed)


def test_static_next_batch_starts_only_after_the_whole_batch():
    reqs = [Request(i, 0.0, 10, 2 if i % 2 else 6) for i in range(4)]
    r = simulate(reqs, engine(batching="static", static_batch_size=2), ToyCost(), record_timeline=True)
    # batch 1 (r0, r1): 1.2 + 5 = 6.2 s; batch 2 starts at 6.2
    assert r.requests.first_token_s.tolist() == pytest.approx([1.2, 1.2, 7.4, 7.4])


def test_static_throughput_is_at_most_continuous():
    reqs = online(300, float("inf"), seed=5)
    cont = EngineConfig(max_num_seqs=32, max_num_batched_tokens=8192, num_kv_blocks=20000)
    stat = EngineConfig(max_num_seqs=32, max_num_batched_tokens=8192, num_kv_blocks=20000, batching="static")
    c = simulate(reqs, cont, COST).metrics
    s = simulate(reqs, stat, COST).metrics
    assert s.tokens_per_second <= c.tokens_per_second
    assert s.padding_waste_fraction > 0.2
    assert c.padding_waste_fraction == 0.0


# ---- pipeline parallelism ---------------------------------------------------------------------------------
def test_pp_two_stages_double_throughput_when_stage_time_halves():
    # A micro-batch holds 32 prompts (token budget 32 x 50). max_num_seqs bounds every request in flight (vLLM's
    # running list), so two micro-batches of 32 need max_num_seqs = 64.
    reqs = requests_from_arrays(np.zeros(512), np.full(512, 50), np.full(512, 100))
    one = simulate(reqs, EngineConfig(max_num_seqs=32, max_num_batched_tokens=1600, num_kv_blocks=20000),
                   ToyCost(fixed_s=1.0, per_prefill_token_s=0.0)).metrics
    two = simulate(reqs, EngineConfig(max_num_seqs=64, max_num_batched_tokens=1600, num_kv_blocks=20000),
                   ToyCost(fixed_s=0.5, per_prefill_token_s=0.0, num_stages=2)).metrics
    assert two.tokens_per_second == pytest.approx(2 * one.tokens_per_second, rel=0.03)
    assert two.mean_batch_size == pytest.approx(one.mean_batch_size, rel=0.03)
    # the same limits without halving the stage time: PP only adds latency
    same = simulate(reqs, EngineConfig(max_num_seqs=32, max_num_batched_tokens=1600, num_kv_blocks=20000),
                    ToyCost(fixed_s=0.5, per_prefill_token_s=0.0, num_stages=2)).metrics
    assert same.tokens_per_second <= one.tokens_per_second * 1.01


def test_pp_bubble_with_one_request():
    # one request: nothing to overlap, every step waits for both stages -> no gain from PP
    reqs = [Request(0, 0.0, 10, 5)]
    one = simulate(reqs, engine(), ToyCost(fixed_s=1.0, per_prefill_token_s=0.0))
    two = simulate(reqs, engine(), ToyCost(fixed_s=0.5, per_prefill_token_s=0.0, num_stages=2))
    assert two.requests.e2e_s[0] == pytest.approx(one.requests.e2e_s[0])
    four = simulate(reqs, engine(), ToyCost(fixed_s=0.5, per_prefill_token_s=0.0, num_stages=4))
    assert four.requests.e2e_s[0] == pytest.approx(2 * one.requests.e2e_s[0])  # 4 stages x 0.5 s per token


def test_pp_keeps_at_most_num_stages_batches_in_flight():
    reqs = requests_from_arrays(np.zeros(64), np.full(64, 20), np.full(64, 30))
    cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=512, num_kv_blocks=20000)
    r = simulate(reqs, cfg, ToyCost(fixed_s=0.25, per_prefill_token_s=0.0, num_stages=4), record_timeline=True)
    tl = r.timeline
    for t in np.linspace(0, tl["end_s"].max(), 50):
        assert ((tl["start_s"] <= t) & (tl["end_s"] > t)).sum() <= 4
    assert r.metrics.num_requests == 64
