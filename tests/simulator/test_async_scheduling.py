"""Async scheduling (EngineConfig.async_scheduling): an arrival during step k joins step k+2, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import EngineConfig, Request, simulate
from simulator.batch import LinearStepCost
from simulator.request import requests_from_arrays
from tests.simulator.test_scheduler_toy import ToyCost


def engine(async_scheduling: bool) -> EngineConfig:
    return EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, block_size=16,
                        async_scheduling=async_scheduling)


@pytest.mark.parametrize("macro_steps", [True, False])
def test_arrival_during_a_step_waits_for_the_step_after_next(macro_steps):
    # ToyCost: 1 s per step + 0.01 s per prefill token. A (prompt 10, 10 tokens) prefills in [0, 1.1] and decodes
    # in [1.1, 2.1], [2.1, 3.1], [3.1, 4.1] ... B (prompt 10) arrives at 2.5, during the step [2.1, 3.1].
    reqs = [Request(0, 0.0, 10, 10), Request(1, 2.5, 10, 2)]
    sync = simulate(reqs, engine(False), ToyCost(), macro_steps=macro_steps).requests
    lagged = simulate(reqs, engine(True), ToyCost(), macro_steps=macro_steps).requests
    # without async scheduling B joins the next step, [3.1, 4.2] (its 10 prompt tokens cost 0.1 s)
    assert sync.first_token_s[1] == pytest.approx(4.2)
    # with it the next step was scheduled when [2.1, 3.1] began: B joins [4.1, 5.2] after a decode of A alone
    assert lagged.first_token_s[1] == pytest.approx(5.2)
    assert lagged.ttft_s[1] == pytest.approx(2.7)
    assert lagged.ttft_s[0] == sync.ttft_s[0] == pytest.approx(1.1)


@pytest.mark.parametrize("macro_steps", [True, False])
def test_no_lag_when_the_step_in_flight_has_nothing_else_to_run(macro_steps):
    # A (3 tokens) ends with the step [2.1, 3.1]; B arrives during it. vLLM's step after that holds no work,
    # so B goes at 3.1 as without async scheduling; C arrives at an idle engine and starts at once.
    reqs = [Request(0, 0.0, 10, 3), Request(1, 2.5, 10, 2), Request(2, 20.0, 10, 2)]
    lagged = simulate(reqs, engine(True), ToyCost(), macro_steps=macro_steps).requests
    assert lagged.first_token_s[1] == pytest.approx(3.1 + 1.1)
    assert lagged.ttft_s[2] == pytest.approx(1.1)


def test_offline_batches_are_unchanged():
    reqs = requests_from_arrays(np.zeros(40), np.full(40, 50), np.full(40, 30))
    a = simulate(reqs, engine(False), LinearStepCost())
    b = simulate(reqs, engine(True), LinearStepCost())
    assert a.metrics == b.metrics


@pytest.mark.parametrize("concurrency", [None, 3])
def test_macro_steps_give_the_same_result(concurrency):
    rng = np.random.default_rng(1)
    reqs = requests_from_arrays(np.cumsum(rng.exponential(0.02, 60)), rng.integers(20, 200, 60),
                                rng.integers(2, 40, 60))
    config = EngineConfig(max_num_seqs=16, max_num_batched_tokens=256, num_kv_blocks=2000, async_scheduling=True)
    fast = simulate(reqs, config, LinearStepCost(), max_concurrency=concurrency)
    slow = simulate(reqs, config, LinearStepCost(), max_concurrency=concurrency, macro_steps=False)
    np.testing.assert_allclose(fast.requests.first_token_s, slow.requests.first_token_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.requests.finish_s, slow.requests.finish_s, rtol=0, atol=1e-12)
    sync = simulate(reqs, EngineConfig(max_num_seqs=16, max_num_batched_tokens=256, num_kv_blocks=2000),
                    LinearStepCost(), max_concurrency=concurrency)
    assert fast.metrics.ttft_s_mean > sync.metrics.ttft_s_mean


def test_refused_outside_v1_continuous_batching():
    with pytest.raises(ValueError, match="async_scheduling"):
        EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, batching="static",
                     async_scheduling=True)


@pytest.mark.parametrize("macro_steps", [True, False])
def test_token_delivery_delays_first_and_last_token_by_the_steps_tokens(macro_steps):
    # ToyCost: A and B (prompt 10, 3 tokens) prefill together in [0, 1.2] (20 prompt tokens), decode in
    # [1.2, 2.2], [2.2, 3.2]. Each step samples 2 tokens: at 0.01 s per token both arrive 0.02 s after the step.
    reqs = [Request(0, 0.0, 10, 3), Request(1, 0.0, 10, 3)]
    r = simulate(reqs, engine(True), ToyCost(), macro_steps=macro_steps, token_delivery_s=0.01).requests
    np.testing.assert_allclose(r.ttft_s, [1.22, 1.22])
    np.testing.assert_allclose(r.e2e_s, [3.22, 3.22])
    np.testing.assert_allclose(r.tpot_s, [1.0, 1.0])
    # C alone: one token per step, 0.01 s later
    c = simulate([Request(0, 0.0, 10, 5)], engine(True), ToyCost(), macro_steps=macro_steps,
                 token_delivery_s=0.01).requests
    assert c.ttft_s[0] == pytest.approx(1.11) and c.e2e_s[0] == pytest.approx(5.11)


def test_token_delivery_is_the_same_with_and_without_macro_steps():
    rng = np.random.default_rng(2)
    reqs = requests_from_arrays(np.cumsum(rng.exponential(0.02, 60)), rng.integers(20, 200, 60),
                                rng.integers(2, 40, 60))
    config = EngineConfig(max_num_seqs=16, max_num_batched_tokens=256, num_kv_blocks=2000, async_scheduling=True)
    fast = simulate(reqs, config, LinearStepCost(), token_delivery_s=3e-4)
    slow = simulate(reqs, config, LinearStepCost(), token_delivery_s=3e-4, macro_steps=False)
    np.testing.assert_allclose(fast.requests.first_token_s, slow.requests.first_token_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.requests.finish_s, slow.requests.finish_s, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="token_delivery_s"):
        simulate(reqs, config, LinearStepCost(), token_delivery_s=-1.0)
