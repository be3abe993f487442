"""Hand-worked toy cases: a toy cost (1 s per step + 0.01 s per prefill token) makes every time countable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator import BatchStats, EngineConfig, Request, simulate
from simulator.kv_blocks import KVBlockPool


class ToyCost:
    """1 s per step plus 0.01 s per prefill token; records every batch it is asked about."""

    num_stages = 1

    def __init__(self, fixed_s: float = 1.0, per_prefill_token_s: float = 0.01, num_stages: int = 1) -> None:
        self.fixed_s = fixed_s
        self.per_prefill_token_s = per_prefill_token_s
        self.num_stages = num_stages

    def __call__(self, batch: BatchStats):
        return self.fixed_s + self.per_prefill_token_s * batch.num_prefill_tokens


def engine(**overrides) -> EngineConfig:
    values = dict(max_num_seqs=8, max_num_batched_tokens=64, num_kv_blocks=64, block_size=16)
    values.update(overrides)
    return EngineConfig(**values)


def test_one_request_ttft_is_one_prefill_step_and_e2e_adds_decode_steps():
    # prompt 10 -> prefill step 1 + 0.1 = 1.1 s; then 4 decode steps of 1 s each.
    r = simulate([Request(0, 0.0, 10, 5)], engine(), ToyCost(), record_timeline=True)
    req = r.requests
    assert req.ttft_s[0] == pytest.approx(1.1)
    assert req.e2e_s[0] == pytest.approx(1.1 + 4 * 1.0)
    assert req.tpot_s[0] == pytest.approx(1.0)
    assert r.metrics.itl_s_mean == pytest.approx(1.0)
    assert r.metrics.num_steps == 5
    tl = r.timeline
    assert tl["num_prefill_tokens"].tolist() == [10, 0, 0, 0, 0]
    assert tl["num_decode_tokens"].tolist() == [0, 1, 1, 1, 1]
    # decode context = KV tokens read incl. the new one: 11, 12, 13, 14 (the 5th token is never computed)
    assert tl["decode_context_tokens"].tolist() == [0, 11, 12, 13, 14]
    assert tl["num_sampled_tokens"].tolist() == [1, 1, 1, 1, 1]
    assert tl["prefill_attention_pairs"][0] == pytest.approx(10 * 11 / 2)


def test_single_token_output_finishes_at_prefill_and_has_no_tpot():
    r = simulate([Request(0, 0.0, 10, 1)], engine(), ToyCost())
    assert r.requests.e2e_s[0] == pytest.approx(1.1)
    assert math.isnan(r.requests.tpot_s[0])
    assert r.metrics.num_steps == 1


def test_two_requests_share_steps():
    # Both prompts (10 + 20 tokens) fit one step: 1 + 0.3 = 1.3 s, then shared decode steps.
    r = simulate([Request(0, 0.0, 10, 3), Request(1, 0.0, 20, 5)], engine(), ToyCost(), record_timeline=True)
    req = r.requests
    assert req.ttft_s.tolist() == pytest.approx([1.3, 1.3])
    assert req.e2e_s.tolist() == pytest.approx([1.3 + 2, 1.3 + 4])
    assert r.timeline["num_seqs"].tolist() == [2, 2, 2, 1, 1]
    assert r.metrics.mean_batch_size == pytest.approx(8 / 5)


def test_late_arrival_joins_running_batch_with_its_prefill():
    # Request 1 arrives during request 0's 2nd step; it is scheduled at the next step together with a decode.
    r = simulate([Request(0, 0.0, 10, 6), Request(1, 1.5, 10, 2)], engine(), ToyCost(), record_timeline=True)
    tl = r.timeline
    # steps: [0,1.1) prefill r0; [1.1,2.1) decode r0 (r1 arrives at 1.5); [2.1,3.2) decode r0 + prefill r1
    assert tl["start_s"].tolist()[:3] == pytest.approx([0.0, 1.1, 2.1])
    assert tl["num_prefill_tokens"].tolist()[:3] == [10, 0, 10]
    assert tl["num_decode_tokens"].tolist()[:3] == [0, 1, 1]
    assert r.requests.first_token_s[1] == pytest.approx(3.2)
    assert r.requests.ttft_s[1] == pytest.approx(3.2 - 1.5)


def test_chunked_prefill_splits_at_the_token_budget():
    # 150-token prompt, budget 64: chunks 64, 64, 22; the first token comes with the last chunk.
    r = simulate([Request(0, 0.0, 150, 2)], engine(), ToyCost(), record_timeline=True)
    tl = r.timeline
    assert tl["num_prefill_tokens"].tolist() == [64, 64, 22, 0]
    assert tl["num_sampled_tokens"].tolist() == [0, 0, 1, 1]
    assert tl["prefill_context_tokens"].tolist()[:3] == [64, 128, 150]
    assert tl["prefill_attention_pairs"][1] == pytest.approx(64 * (64 + 65 / 2))
    assert r.requests.ttft_s[0] == pytest.approx(3 * 1.0 + 1.5)


def test_decodes_go_first_and_a_waiting_prompt_gets_the_rest_of_the_budget():
    # r1 (100 tokens) arrives during r0's prefill step; next step r0 decodes 1 token and r1 gets
    # 64 - 1 = 63 tokens, then 37.
    reqs = [Request(0, 0.0, 10, 10), Request(1, 0.5, 100, 2)]
    tl = simulate(reqs, engine(), ToyCost(), record_timeline=True).timeline
    assert tl["num_prefill_tokens"].tolist()[:4] == [10, 63, 37, 0]
    assert tl["num_decode_tokens"].tolist()[:4] == [0, 1, 1, 2]
    assert (tl["num_prefill_tokens"] + tl["num_decode_tokens"] <= 64).all()


def test_chunked_prefill_off_waits_for_a_whole_prompt():
    reqs = [Request(0, 0.0, 10, 10), Request(1, 0.5, 64, 2)]
    tl = simulate(reqs, engine(enable_chunked_prefill=False), ToyCost(), record_timeline=True).timeline
    # budget left after r0's decode is 63 < 64: r1 waits until r0 is done
    assert tl["num_prefill_tokens"].max() == 64
    row = tl.index[tl["num_prefill_tokens"] == 64][0]
    assert tl["num_decode_tokens"][row] == 0


def test_max_num_seqs_limits_the_running_set():
    reqs = [Request(i, 0.0, 4, 3) for i in range(5)]
    tl = simulate(reqs, engine(max_num_seqs=2), ToyCost(), record_timeline=True).timeline
    assert tl["num_seqs"].max() == 2
    assert tl["num_running"].max() <= 2


def test_preemption_when_kv_blocks_run_out_is_counted_and_recomputes():
    # 4 blocks of 4 tokens = 16 KV tokens. Two requests of prompt 4 + 8 output need 11 tokens each.
    # Both are admitted (1 block each), grow, and the younger one is preempted when the pool is empty.
    reqs = [Request(0, 0.0, 4, 8), Request(1, 0.0, 4, 8)]
    cfg = engine(num_kv_blocks=4, block_size=4, max_num_batched_tokens=16)
    r = simulate(reqs, cfg, ToyCost(per_prefill_token_s=0.0), record_timeline=True)
    assert r.metrics.num_preemptions >= 1
    assert r.requests.num_preemptions.tolist()[0] == 0       # the older one is never the victim
    assert r.requests.num_preemptions.tolist()[1] >= 1
    tl = r.timeline
    assert (tl["kv_usage"] <= 1.0).all()
    # the recompute prefills prompt + generated tokens (more than the 4-token prompt)
    assert tl["num_prefill_tokens"].max() > 4
    # every request still produces exactly its tokens: total sampled = 16
    assert tl["num_sampled_tokens"].sum() == 16
    assert r.requests.finish_s.max() == pytest.approx(tl["end_s"].max())


def test_preemption_hand_worked():
    # blocks of 4 tokens, 3 blocks. r0: prompt 4, output 6 (KV up to 9 tokens = 3 blocks);
    # r1: prompt 4, output 2 (5 tokens = 2 blocks).
    # step1 t=0: prefill both (1 block each; 1 free).  step2: r0 decodes token at pos 4 -> block, r1 pos 4 ->
    # needs a block, none free -> preempt r1 (the younger) ; r1 goes back to waiting.
    reqs = [Request(0, 0.0, 4, 6), Request(1, 0.0, 4, 2)]
    cfg = engine(num_kv_blocks=3, block_size=4, max_num_batched_tokens=16)
    r = simulate(reqs, cfg, ToyCost(per_prefill_token_s=0.0), record_timeline=True)
    tl = r.timeline
    assert r.requests.num_preemptions.tolist() == [0, 1]
    assert tl["num_seqs"].tolist()[:2] == [2, 1]
    # r1 is readmitted later, prefilling prompt + its 1 generated token = 5 tokens
    assert 5 in tl["num_prefill_tokens"].tolist()


def test_kv_pool_answers_none_when_full():
    pool = KVBlockPool(num_blocks=2, block_size=4)
    assert pool.allocate_slots(0, 5) == 2
    assert pool.allocate_slots(5, 3) == 0      # tokens 5..7 fit in block 2
    assert pool.allocate_slots(8, 1) is None   # token 8 needs a third block
    assert pool.num_free_blocks == 0
    assert pool.free_tokens(8) == 2
    assert pool.num_free_blocks == 2


def test_request_too_long_for_the_kv_cache_is_refused():
    with pytest.raises(ValueError, match="KV tokens"):
        simulate([Request(0, 0.0, 2000, 10)], engine(num_kv_blocks=4), ToyCost())


def test_engine_config_validation():
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        EngineConfig(max_num_seqs=512, max_num_batched_tokens=256, num_kv_blocks=10)
    with pytest.raises(ValueError, match="batching"):
        EngineConfig(max_num_seqs=4, max_num_batched_tokens=256, num_kv_blocks=10, batching="dynamic")
    with pytest.raises(ValueError, match="static_batch_size"):
        EngineConfig(max_num_seqs=4, max_num_batched_tokens=256, num_kv_blocks=10, static_batch_size=2)


def test_timeline_steps_recost():
    reqs = [Request(i, 0.0, 10 + i, 3 + i) for i in range(4)]
    cost = ToyCost()
    r = simulate(reqs, engine(), cost, record_timeline=True)
    recosted = np.asarray(cost(r.steps))
    assert recosted.sum() == pytest.approx(r.requests.finish_s.max())
    assert len(r.steps) == r.metrics.num_steps
