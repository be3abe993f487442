"""The V0 scheduler (vLLM 0.7, chunked prefill off) on toy costs: hand-worked cases and engine properties.

TOY: 1 s per step + 0.01 s per prefill token, so every time below can be counted by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator import (EngineConfig, LengthDistribution, LinearStepCost, Request, make_requests,
                       requests_from_arrays, simulate)
from simulator.itl import ItlRecorder
from simulator.request import RequestTable
from simulator.scheduler_v0 import VirtualEngines

TOY = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.01, per_decode_context_token_s=0.0, per_decode_token_s=0.0)
COST = LinearStepCost(fixed_s=5e-3, per_prefill_token_s=2e-5, per_decode_context_token_s=1.5e-7,
                      per_decode_token_s=5e-5)


def v0(**overrides) -> EngineConfig:
    values = dict(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, block_size=16,
                  enable_chunked_prefill=False, scheduler="v0")
    values.update(overrides)
    return EngineConfig(**values)


def v1_of(cfg: EngineConfig) -> EngineConfig:
    return EngineConfig(max_num_seqs=cfg.max_num_seqs, max_num_batched_tokens=cfg.max_num_batched_tokens,
                        num_kv_blocks=cfg.num_kv_blocks, block_size=cfg.block_size)


def steps(result) -> list[tuple[int, int]]:
    tl = result.timeline
    return list(zip(tl["num_prefill_tokens"].tolist(), tl["num_decode_tokens"].tolist()))


def online(num: int, rate: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    return make_requests(num, LengthDistribution.lognormal(300, 0.6), LengthDistribution.lognormal(100, 0.6),
                         rng, request_rate=rate)


def test_a_prefill_step_stalls_the_running_decodes():
    # A: prompt 10, 5 tokens; B: prompt 20, 3 tokens, arrives at 1.5 s (during A's first decode, 1.1-2.1 s).
    # V0: [P A 1.1] [D A 1.0] [P B 1.2, A waits] [D AB] [D AB] [D A]: A's tokens at 1.1 2.1 4.3 5.3 6.3.
    reqs = [Request(0, 0.0, 10, 5), Request(1, 1.5, 20, 3)]
    r = simulate(reqs, v0(), TOY, record_timeline=True)
    assert steps(r) == [(10, 0), (0, 1), (20, 0), (0, 2), (0, 2), (0, 1)]
    assert r.requests.finish_s.tolist() == pytest.approx([6.3, 5.3])
    assert r.requests.first_token_s.tolist() == pytest.approx([1.1, 3.3])
    assert r.itl_gap_s.max() == pytest.approx(2.2)  # A's gap across B's prefill
    # V1 runs B's prompt with A's decode in one 1.2 s step: A's tokens at 1.1 2.1 3.3 4.3 5.3.
    r1 = simulate(reqs, v1_of(v0()), TOY)
    assert r1.requests.finish_s[0] == pytest.approx(5.3)


def test_a_step_never_mixes_prefill_and_decode():
    r = simulate(online(300, 30.0, seed=1), v0(max_num_seqs=32, max_num_batched_tokens=2048, num_kv_blocks=3000),
                 COST, record_timeline=True)
    tl = r.timeline
    assert not ((tl["num_prefill_tokens"] > 0) & (tl["num_decode_tokens"] > 0)).any()
    assert (tl["num_prefill_tokens"] > 0).sum() > 10 and (tl["num_decode_tokens"] > 0).sum() > 100


def test_decode_speed_per_request_falls_as_concurrency_rises():
    # Closed loop, toy cost: decode steps cost the same whatever the batch, so V1's TPOT only grows by the
    # prefill chunks it mixes in; V0 also stops every client's stream for each other client's prefill step.
    # Output lengths differ, so that clients finish (and their successors prefill) at different times.
    reqs = requests_from_arrays(np.zeros(120), np.full(120, 50), 20 + np.arange(120) * 7 % 41)
    cfg = v0(max_num_seqs=32, max_num_batched_tokens=2048, num_kv_blocks=2000)
    tpot = {}
    for c in (1, 4, 16):
        tpot[c] = float(np.mean(simulate(reqs, cfg, TOY, max_concurrency=c).requests.tpot_s))
    assert tpot[1] == pytest.approx(1.0)  # alone: every decode step takes 1 s
    assert tpot[1] < tpot[4] < tpot[16]
    tpot_v1 = float(np.mean(simulate(reqs, v1_of(cfg), TOY, max_concurrency=16).requests.tpot_s))
    assert tpot[16] > 1.2 * tpot_v1


def test_budget_and_max_num_seqs_are_respected():
    # prompts of 30, budget 64, max_num_seqs 3: [P 30+30] [P 30 (the 3rd seat)] then decodes of 3.
    reqs = requests_from_arrays(np.zeros(10), np.full(10, 30), np.full(10, 4))
    r = simulate(reqs, v0(max_num_seqs=3), TOY, record_timeline=True)
    tl = r.timeline
    assert steps(r)[:3] == [(60, 0), (30, 0), (0, 3)]
    assert (tl["num_prefill_tokens"] + tl["num_decode_tokens"] <= 64).all()
    assert (tl["num_running"] <= 3).all() and (tl["num_seqs"] <= 3).all()


def test_prefill_admission_is_strict_fcfs():
    # [40, 40, 10] with a budget of 64: V0 stops at the second prompt; V1 (chunked off) skips it for the 10.
    reqs = requests_from_arrays(np.zeros(3), [40, 40, 10], [2, 2, 2])
    assert steps(simulate(reqs, v0(), TOY, record_timeline=True))[0] == (40, 0)
    v1 = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, enable_chunked_prefill=False)
    assert steps(simulate(reqs, v1, TOY, record_timeline=True))[0] == (50, 0)


def test_watermark_keeps_one_percent_of_the_blocks_free_at_admission():
    # 200 blocks of 16 -> watermark 2 blocks. A takes 100 (100 left); B needs 99, 100 - 99 < 2: B waits
    # until A is done although it would fit.
    reqs = requests_from_arrays(np.zeros(2), [1600, 1584], [2, 2])
    r = simulate(reqs, v0(max_num_batched_tokens=4096, num_kv_blocks=200), TOY, record_timeline=True)
    assert steps(r) == [(1600, 0), (0, 1), (1584, 0), (0, 1)]


def test_preemption_by_recompute_hand_worked():
    # block 4, 7 blocks (watermark 0); A and B: prompt 8 (2 blocks), 9 tokens (KV up to 16 = 4 blocks).
    # [P 8+8] leaves 3 free; decodes 8 and 9..11 of both take 2 -> 1 free. Decode 12 needs a block each:
    # A takes the last one, B finds none free and is the last one walked: B preempts itself (frees 3 blocks)
    # after 5 tokens (prompt + generated = 13 to recompute). B needs 4 blocks to come back, 3 are free: it
    # waits while A decodes 13..15 and finishes; then [P 13] samples B's 6th token; B decodes 13..15.
    reqs = requests_from_arrays(np.zeros(2), [8, 8], [9, 9])
    cfg = v0(block_size=4, num_kv_blocks=7)
    r = simulate(reqs, cfg, TOY, record_timeline=True)
    assert steps(r) == [(16, 0)] + [(0, 2)] * 4 + [(0, 1)] * 4 + [(13, 0)] + [(0, 1)] * 3
    assert r.requests.num_preemptions.tolist() == [0, 1]
    assert r.metrics.num_preemptions == 1
    assert int(r.itl_count.sum()) == 2 * 8  # every token after the first, the recomputed one included
    assert r.requests.finish_s[1] == pytest.approx(1.16 + 4 + 4 + 1.13 + 3)


def test_macro_steps_equal_single_steps_for_v0():
    for cfg, kwargs in [(v0(max_num_seqs=64, max_num_batched_tokens=2048, num_kv_blocks=4000), {}),
                        (v0(max_num_seqs=64, max_num_batched_tokens=2048, num_kv_blocks=300), {}),
                        (v0(max_num_seqs=64, max_num_batched_tokens=2048, num_kv_blocks=4000),
                         dict(max_concurrency=20, num_replicas=2))]:
        reqs = online(300, 50.0 if not kwargs else float("inf"), seed=2)
        macro = simulate(reqs, cfg, COST, record_timeline=True, **kwargs)
        single = simulate(reqs, cfg, COST, record_timeline=True, macro_steps=False, **kwargs)
        assert macro.metrics == single.metrics
        np.testing.assert_array_equal(macro.requests.finish_s, single.requests.finish_s)
        np.testing.assert_array_equal(macro.timeline.to_numpy(), single.timeline.to_numpy())
        if cfg.num_kv_blocks == 300:
            assert macro.metrics.num_preemptions > 0


def test_pp_virtual_engines_hand_worked():
    # pp = 2: request 0 -> engine 0, request 1 -> engine 1, each runs its own batches, sharing the stages:
    # engine 0 prefill: stage 0 [0, 1.1], stage 1 [1.1, 2.2]; engine 1 prefill: [1.1, 2.2], [2.2, 3.3];
    # engine 0 decode: [2.2, 3.2], stage 1 free at 3.3 -> [3.3, 4.3]; engine 1: [3.3, 4.3], [4.3, 5.3]; ...
    reqs = [Request(0, 0.0, 10, 3), Request(1, 0.0, 10, 3)]
    toy2 = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.01, per_decode_context_token_s=0.0,
                          per_decode_token_s=0.0, num_stages=2)
    r = simulate(reqs, v0(), toy2, record_timeline=True)
    assert r.requests.first_token_s.tolist() == pytest.approx([2.2, 3.3])
    assert r.requests.finish_s.tolist() == pytest.approx([6.3, 7.3])
    assert steps(r) == [(10, 0), (10, 0), (0, 1), (0, 1), (0, 1), (0, 1)]
    # V1: one scheduler puts both prompts in one batch: both first tokens after 2 x 1.2 s.
    r1 = simulate(reqs, v1_of(v0()), toy2)
    assert r1.requests.first_token_s.tolist() == pytest.approx([2.4, 2.4])


def test_pp_arrivals_wait_for_a_virtual_engine_step_to_begin():
    # vLLM 0.7.0 AsyncLLMEngine hands new requests to the schedulers only when a virtual engine's step begins
    # (engine_step), or at once when every virtual engine is idle. 1 s per stage + 0.01 s per prefill token.
    toy2 = LinearStepCost(fixed_s=1.0, per_prefill_token_s=0.01, per_decode_context_token_s=0.0,
                          per_decode_token_s=0.0, num_stages=2)
    # A (engine 0) prefills on stage 0 [0, 1.1], stage 1 [1.1, 2.2]. B arrives at 0.5 and waits: engine 1 is idle
    # but engine 0's step is under way; at 2.2 engine 0's next step begins, B goes to engine 1 (the least loaded).
    # Engine 0 decodes A on stage 0 [2.2, 3.2]; B's prefill follows [3.2, 4.3], then stage 1 [4.3, 5.4].
    reqs = [Request(0, 0.0, 10, 3), Request(1, 0.5, 10, 3)]
    r = simulate(reqs, v0(), toy2)
    assert r.requests.first_token_s.tolist() == pytest.approx([2.2, 5.4])
    assert r.requests.finish_s.tolist() == pytest.approx([6.4, 9.4])
    # A finishes with its prefill at 2.2: engine 0 goes idle with B waiting, and the engine loop takes B at once.
    reqs = [Request(0, 0.0, 10, 1), Request(1, 0.5, 10, 1)]
    r = simulate(reqs, v0(), toy2)
    assert r.requests.first_token_s.tolist() == pytest.approx([2.2, 4.4])
    # Engine 1 is the last to go idle (3.3) with X (2.5, 50 tokens) and Y (2.6) waiting: X goes to engine 0, Y to
    # engine 1, and the engine loop starts engine 0's step first (run_engine_loop creates the steps in index
    # order): X on stage 0 [3.3, 4.8], stage 1 [4.8, 6.3]; Y on stage 0 [4.8, 5.9], stage 1 [6.3, 7.4].
    reqs = [Request(0, 0.0, 10, 1), Request(1, 0.0, 10, 1), Request(2, 2.5, 50, 1), Request(3, 2.6, 10, 1)]
    r = simulate(reqs, v0(), toy2)
    assert r.requests.first_token_s.tolist() == pytest.approx([2.2, 3.3, 6.3, 7.4])


def test_virtual_engines_split_the_blocks_and_take_the_least_loaded():
    table = RequestTable(requests_from_arrays(np.zeros(4), [10] * 4, [2] * 4))
    engines = VirtualEngines(v0(num_kv_blocks=65), table, ItlRecorder(), num_stages=2)
    assert [s.pool.num_blocks for s in engines.schedulers] == [32, 32]
    assert [engines.add_request(i) for i in range(3)] == [0, 1, 0]
    # a request fitting the whole cache but not one engine's half is refused
    with pytest.raises(ValueError, match="V0 scheduler holds 32"):
        simulate([Request(0, 0.0, 40, 500)], v0(num_kv_blocks=65), LinearStepCost(num_stages=2))
    assert simulate([Request(0, 0.0, 40, 500)], v0(num_kv_blocks=65), LinearStepCost()).metrics.num_steps == 500


def test_littles_law_and_determinism():
    cfg = v0(max_num_seqs=128, max_num_batched_tokens=8192, num_kv_blocks=20000)
    reqs = online(3000, 15.0, seed=1)
    r = simulate(reqs, cfg, COST, record_timeline=True)
    tl = r.timeline
    duration = r.requests.finish_s.max() - r.requests.sent_s.min()
    in_system = tl["num_running"] + tl["num_waiting"]
    L = float(np.sum(in_system * (tl["end_s"] - tl["start_s"]))) / duration
    assert L == pytest.approx(len(reqs) / duration * float(np.mean(r.requests.e2e_s)), rel=0.05)
    again = simulate(reqs, cfg, COST, record_timeline=True)
    assert again.metrics == r.metrics
    np.testing.assert_array_equal(again.requests.finish_s, r.requests.finish_s)
    pp = simulate(reqs[:500], cfg, LinearStepCost(num_stages=2), num_replicas=2, router="random", seed=3)
    assert pp.metrics == simulate(reqs[:500], cfg, LinearStepCost(num_stages=2), num_replicas=2, router="random",
                                  seed=3).metrics


def test_v0_config_validation():
    with pytest.raises(ValueError, match="scheduler must be"):
        EngineConfig(max_num_seqs=1, max_num_batched_tokens=8, num_kv_blocks=8, scheduler="v2")
    with pytest.raises(ValueError, match="chunked prefill off"):
        EngineConfig(max_num_seqs=1, max_num_batched_tokens=8, num_kv_blocks=8, scheduler="v0")
    with pytest.raises(ValueError, match="continuous"):
        v0(batching="static")
    with pytest.raises(ValueError, match="V1 option"):
        v0(long_prefill_token_threshold=16)
    assert EngineConfig(max_num_seqs=1, max_num_batched_tokens=8, num_kv_blocks=8).scheduler == "v1"
    with pytest.raises(ValueError, match="exceeds max_num_batched_tokens"):
        simulate([Request(0, 0.0, 65, 2)], v0(), TOY)


@pytest.mark.parametrize("num_stages", [1, 2])
def test_every_token_is_emitted_once_under_kv_pressure(num_stages):
    reqs = online(400, 80.0, seed=5)
    cfg = v0(max_num_seqs=64, max_num_batched_tokens=4096, num_kv_blocks=600)
    r = simulate(reqs, cfg, LinearStepCost(num_stages=num_stages), record_timeline=True)
    assert r.metrics.num_preemptions > 0
    assert int(r.itl_count.sum()) == int(np.sum(r.requests.num_output_tokens - 1))
    assert (r.requests.finish_s >= r.requests.first_token_s).all()
    assert (r.timeline["kv_usage"] <= 1.0).all()


def test_single_token_outputs_are_prefill_steps_only():
    reqs = requests_from_arrays(np.zeros(500), np.full(500, 30), np.ones(500, dtype=int))
    r = simulate(reqs, v0(), TOY, record_timeline=True)
    assert steps(r) == [(60, 0)] * 250  # two prompts of 30 per 64-token budget, no decode step ever


class _HostToy:
    """A toy pp=2 cost plus a CPU part of each stage's time and the return of the last stage's result."""

    def __init__(self, prep_s: float, host_s: float, **kwargs) -> None:
        self.cost = LinearStepCost(**kwargs)
        self.num_stages = self.cost.num_stages
        self.prep_s, self.host_s = prep_s, host_s

    def __call__(self, batch):
        return self.cost(batch)

    def stage_split_s(self, batch) -> tuple[float, float, float]:
        return self.prep_s, 0.0, self.host_s


def test_virtual_engine_stages_prepare_in_parallel_then_the_result_returns():
    # stage time 1 s (+0.01 s per prefill token) of which 0.5 s is preparation; the result returns in 0.3 s.
    # prefill: stage 0 [0, 1.1]; stage 1 prepares [0, 0.5], computes [1.1, 1.7]; returns [1.7, 2.0].
    # decode: stage 0 [2.0, 3.0]; stage 1 prepares [2.0, 2.5], computes [3.0, 3.5]; returns -> 3.8.
    toy = _HostToy(0.5, 0.3, fixed_s=1.0, per_prefill_token_s=0.01, per_decode_context_token_s=0.0,
                   per_decode_token_s=0.0, num_stages=2)
    r = simulate([Request(0, 0.0, 10, 2)], v0(), toy)
    assert r.requests.first_token_s.tolist() == pytest.approx([2.0])
    assert r.requests.finish_s.tolist() == pytest.approx([3.8])


def test_last_stage_is_held_until_its_result_returns():
    # 1 s per stage, no preparation, 2 s for the last stage's result to return (vLLM 0.7.0 holds the stage's lock
    # for the whole remote call): engine 0's prefill leaves stage 1 at 2 and is back at 4, holding stage 1 until
    # then; engine 1's left stage 0 at 2, so it computes on stage 1 [4, 5] and is back at 7.
    toy = _HostToy(0.0, 2.0, fixed_s=1.0, per_prefill_token_s=0.0, per_decode_context_token_s=0.0,
                   per_decode_token_s=0.0, num_stages=2)
    r = simulate([Request(0, 0.0, 10, 1), Request(1, 0.0, 10, 1)], v0(), toy)
    assert r.requests.first_token_s.tolist() == pytest.approx([4.0, 7.0])
