"""The open-loop driver (no SimPy) gives the same results as the SimPy replicas, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator import EngineConfig, LengthDistribution, LinearStepCost, Request, make_requests, simulate
from simulator.run import _uses_open_loop
from simulator.stream import RequestStream

COST = LinearStepCost()


class _WithCpu:
    """COST whose steps spend their first 2 ms on the CPU (`StepCost.cpu_time_s`), when async output processing
    delivers the previous step's tokens."""

    num_stages = 1

    def __call__(self, batch):
        return COST(batch)

    def cpu_time_s(self, batch):
        return np.full(np.shape(batch.num_seqs), 2e-3)


def _requests(n: int, rate: float, seed: int = 0, *, prompt=(50, 400), output=(1, 300)) -> list[Request]:
    rng = np.random.default_rng(seed)
    return make_requests(n, LengthDistribution.uniform(*prompt), LengthDistribution.uniform(*output), rng,
                         request_rate=rate)


CASES = {
    "offline": (_requests(300, float("inf")), EngineConfig(max_num_seqs=64, max_num_batched_tokens=2048,
                                                           num_kv_blocks=3000), {}),
    "poisson": (_requests(500, 20.0), EngineConfig(max_num_seqs=32, max_num_batched_tokens=512,
                                                   num_kv_blocks=2000), {}),
    "kv_pressure": (_requests(300, 40.0, 1), EngineConfig(max_num_seqs=64, max_num_batched_tokens=2048,
                                                          num_kv_blocks=300), {}),
    "random_dp3": (_requests(400, 30.0, 2), EngineConfig(max_num_seqs=16, max_num_batched_tokens=512,
                                                         num_kv_blocks=2000),
                   dict(num_replicas=3, router="random", seed=5)),
    "latency_rr2": (_requests(300, 15.0, 3), EngineConfig(max_num_seqs=16, max_num_batched_tokens=1024,
                                                          num_kv_blocks=2000),
                    dict(num_replicas=2, request_latency_s=0.05)),
    "v0": (_requests(300, 25.0, 4), EngineConfig(max_num_seqs=32, max_num_batched_tokens=2048, num_kv_blocks=800,
                                                 scheduler="v0", enable_chunked_prefill=False), {}),
    "no_chunking": (_requests(300, 25.0, 5), EngineConfig(max_num_seqs=32, max_num_batched_tokens=512,
                                                          num_kv_blocks=800, enable_chunked_prefill=False), {}),
    "prefix_cache": ([dataclasses.replace(r, num_shared_prefix_tokens=40) for r in _requests(200, 20.0, 6)],
                     EngineConfig(max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=2000,
                                  enable_prefix_caching=True), {}),
    "integer_ties": ([Request(i, float(i // 2), 16 + i % 7, 3 + i % 5) for i in range(60)],
                     EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, num_kv_blocks=64),
                     {}),
    # V0's async output processing (simulator.engine.Replica._lag): tokens a step late, the extra step when idle
    "v0_async_output": (_requests(300, 25.0, 4), EngineConfig(max_num_seqs=32, max_num_batched_tokens=2048,
                                                              num_kv_blocks=800, scheduler="v0",
                                                              enable_chunked_prefill=False,
                                                              async_output_processing=True), {}),
    "v0_async_output_low_rate": (_requests(200, 2.0, 19), EngineConfig(max_num_seqs=32, max_num_batched_tokens=2048,
                                                                       num_kv_blocks=800, scheduler="v0",
                                                                       enable_chunked_prefill=False,
                                                                       async_output_processing=True), {}),
    "v0_async_output_offline": (_requests(200, float("inf"), 20), EngineConfig(
        max_num_seqs=64, max_num_batched_tokens=2048, num_kv_blocks=3000, scheduler="v0",
        enable_chunked_prefill=False, async_output_processing=True), {}),
    "v0_chunked_async_output": (_requests(300, 25.0, 23), EngineConfig(  # V0 with chunked prefill: the V1 model
        max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=800, async_output_processing=True),
                                dict(num_replicas=2, request_latency_s=0.01)),
    "v0_async_output_kv_pressure": (_requests(300, 40.0, 21), EngineConfig(
        max_num_seqs=64, max_num_batched_tokens=2048, num_kv_blocks=300, scheduler="v0",
        enable_chunked_prefill=False, async_output_processing=True), dict(num_replicas=2)),
    # V0's worker loops (EngineConfig.idle_stop_s): stopped whenever a replica runs out of work, started by its next step
    "v0_idle_stops": (_requests(300, 3.0, 24), EngineConfig(
        max_num_seqs=32, max_num_batched_tokens=2048, num_kv_blocks=800, scheduler="v0", enable_chunked_prefill=False,
        idle_stop_s=0.02, idle_restart_s=0.01), dict(num_replicas=2, request_latency_s=0.01)),
    "v0_async_output_idle_stops": (_requests(300, 3.0, 25), EngineConfig(
        max_num_seqs=32, max_num_batched_tokens=2048, num_kv_blocks=800, scheduler="v0", enable_chunked_prefill=False,
        async_output_processing=True, idle_stop_s=0.02, idle_restart_s=0.01), {}),
    "v0_chunked_idle_stops": (_requests(300, 3.0, 27), EngineConfig(  # V0 with chunked prefill (the V1 model), eager
        max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=800, idle_stop_s=0.02, idle_restart_s=0.01),
                              dict(num_replicas=2)),
    "v0_restart_only": (_requests(300, 3.0, 28), EngineConfig(  # the loops stop in no time, every start is paid
        max_num_seqs=32, max_num_batched_tokens=2048, num_kv_blocks=800, scheduler="v0", enable_chunked_prefill=False,
        idle_restart_s=0.01), {}),
    "v1_model_stop_only": (_requests(300, 3.0, 29), EngineConfig(  # (the V1 model of V0 with chunked prefill)
        max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=800, idle_stop_s=0.02), {}),
    "v0_async_output_idle_stops_busy": (_requests(300, 25.0, 26), EngineConfig(
        max_num_seqs=32, max_num_batched_tokens=2048, num_kv_blocks=800, scheduler="v0", enable_chunked_prefill=False,
        async_output_processing=True, idle_stop_s=0.05, idle_restart_s=0.03), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_open_loop_equals_simpy(case):
    reqs, cfg, kwargs = CASES[case]
    cost = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.0, per_decode_context_token_s=0.0,
                          per_decode_token_s=0.0) if case == "integer_ties" else _WithCpu() if "async" in case else COST
    assert _uses_open_loop(cfg, cost, kwargs.get("router", "round_robin"), None, False, True)
    fast = simulate(reqs, cfg, cost, **kwargs)
    slow = simulate(reqs, cfg, cost, macro_steps=False, **kwargs)  # SimPy, one step at a time
    assert fast.metrics == slow.metrics
    for field in dataclasses.fields(fast.requests):
        np.testing.assert_array_equal(getattr(fast.requests, field.name), getattr(slow.requests, field.name))
    order_f, order_s = np.lexsort((fast.itl_count, fast.itl_gap_s)), np.lexsort((slow.itl_count, slow.itl_gap_s))
    np.testing.assert_array_equal(fast.itl_gap_s[order_f], slow.itl_gap_s[order_s])
    if case == "kv_pressure":
        assert fast.metrics.num_preemptions > 0


def _assert_same(fast, slow) -> None:
    assert fast.metrics == slow.metrics
    for field in dataclasses.fields(fast.requests):
        np.testing.assert_array_equal(getattr(fast.requests, field.name), getattr(slow.requests, field.name))
    order_f, order_s = np.lexsort((fast.itl_count, fast.itl_gap_s)), np.lexsort((slow.itl_count, slow.itl_gap_s))
    np.testing.assert_array_equal(fast.itl_gap_s[order_f], slow.itl_gap_s[order_s])


_SERVED = EngineConfig(max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=2000, async_scheduling=True)
SERVED_CASES = {  # async scheduling's admission lag and the token delivery delay (docs/online-model.md)
    "async_low_rate": (_requests(300, 5.0, 7), _SERVED, {}),
    "async_poisson": (_requests(500, 20.0, 8), _SERVED, {}),
    "async_saturated": (_requests(400, 200.0, 9), _SERVED, {}),
    "async_offline": (_requests(200, float("inf"), 10), _SERVED, {}),
    "delivery_only": (_requests(400, 25.0, 11), dataclasses.replace(_SERVED, async_scheduling=False),
                      dict(token_delivery_s=2e-4)),
    "served_poisson": (_requests(500, 20.0, 12), _SERVED, dict(token_delivery_s=2e-4)),
    "served_saturated": (_requests(400, 200.0, 13), _SERVED, dict(token_delivery_s=1e-4)),
    "served_kv_pressure": (_requests(300, 40.0, 14), dataclasses.replace(_SERVED, max_num_batched_tokens=2048,
                                                                         max_num_seqs=64, num_kv_blocks=300),
                           dict(token_delivery_s=1e-4)),
    "served_rr2_latency": (_requests(400, 30.0, 15), _SERVED,
                           dict(num_replicas=2, request_latency_s=0.05, token_delivery_s=2e-4)),
    "served_random_dp3": (_requests(400, 60.0, 16), dataclasses.replace(_SERVED, max_num_seqs=16),
                          dict(num_replicas=3, router="random", seed=5, token_delivery_s=2e-4)),
    "delivery_v0": (_requests(300, 25.0, 17), dataclasses.replace(_SERVED, scheduler="v0", num_kv_blocks=800, async_scheduling=False,
                                                                max_num_batched_tokens=2048,
                                                                enable_chunked_prefill=False),
                  dict(token_delivery_s=2e-4)),
    "delivery_v0_async_output": (_requests(300, 25.0, 22), dataclasses.replace(
        _SERVED, scheduler="v0", num_kv_blocks=800, async_scheduling=False, max_num_batched_tokens=2048,
        enable_chunked_prefill=False, async_output_processing=True), dict(token_delivery_s=2e-4)),
    "served_long_runs": (_requests(60, 0.5, 18, output=(500, 2000)), _SERVED, dict(token_delivery_s=2e-4)),
    "served_integer_ties": ([Request(i, float(i // 2), 16 + i % 7, 3 + i % 5) for i in range(60)],
                            EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, num_kv_blocks=64,
                                         async_scheduling=True), dict(token_delivery_s=0.25)),
}


@pytest.mark.parametrize("case", sorted(SERVED_CASES))
def test_served_open_loop_equals_simpy(case):
    reqs, cfg, kwargs = SERVED_CASES[case]
    cost = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.0, per_decode_context_token_s=0.0,
                          per_decode_token_s=0.0) if case == "served_integer_ties" else (
        _WithCpu() if "async_output" in case else COST)
    assert _uses_open_loop(cfg, cost, kwargs.get("router", "round_robin"), None, False, True)
    fast = simulate(reqs, cfg, cost, **kwargs)
    slow = simulate(reqs, cfg, cost, macro_steps=False, **kwargs)  # SimPy, one step at a time
    _assert_same(fast, slow)
    if case == "served_kv_pressure":
        assert fast.metrics.num_preemptions > 0


def test_a_stream_gives_what_its_list_gives_and_keeps_no_requests_when_asked():
    reqs, cfg, _ = CASES["poisson"]
    listed = simulate(reqs, cfg, COST)
    stream = RequestStream.from_requests(reqs, chunk_size=64)
    streamed = simulate(stream, cfg, COST, keep_requests=False)
    assert streamed.metrics == listed.metrics
    assert streamed.requests is None and streamed.itl_gap_s is None
