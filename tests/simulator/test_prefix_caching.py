"""Prefix caching: requests sharing a prompt prefix reuse its KV blocks once one request has computed it."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import BatchStats, EngineConfig, Request, simulate

BLOCK = 16


class RecordingCost:
    """1 ms per step plus 10 us per prefill token; records every batch."""

    num_stages = 1

    def __init__(self) -> None:
        self.batches: list[BatchStats] = []

    def __call__(self, batch: BatchStats) -> float:
        self.batches.append(batch)
        return 1e-3 + 1e-5 * batch.num_prefill_tokens


def engine(caching: bool, **overrides) -> EngineConfig:
    values = dict(max_num_seqs=4, max_num_batched_tokens=512, num_kv_blocks=400, block_size=BLOCK,
                  enable_prefix_caching=caching)
    values.update(overrides)
    return EngineConfig(**values)


def requests(n: int = 12, prompt: int = 300, output: int = 20, prefix: int = 0, rate_s: float = 0.0):
    return [Request(i, i * rate_s, prompt, output, prefix) for i in range(n)]


def run(reqs, config):
    cost = RecordingCost()
    result = simulate(reqs, config, cost, record_timeline=True, macro_steps=False)
    return result, cost.batches


def same(a, b) -> None:
    (ra, ba), (rb, bb) = a, b
    assert ba == bb
    assert np.array_equal(ra.requests.first_token_s, rb.requests.first_token_s)
    assert np.array_equal(ra.requests.finish_s, rb.requests.finish_s)
    assert ra.metrics == rb.metrics


def test_no_prefix_or_caching_off_is_identical_to_plain_requests():
    plain = run(requests(), engine(False))
    same(plain, run(requests(), engine(True)))              # caching on, no shared prefix
    same(plain, run(requests(prefix=200), engine(False)))   # shared prefix, caching off


@pytest.mark.parametrize("prefix", [200, 250, 15])
def test_cached_tokens_are_skipped_and_rounded_down_to_blocks(prefix):
    n, prompt = 12, 300
    cached = prefix // BLOCK * BLOCK
    # one request at a time (max_num_seqs=1): the first pays in full, every later one hits the cache
    off, b_off = run(requests(n, prompt, prefix=prefix), engine(False, max_num_seqs=1))
    on, b_on = run(requests(n, prompt, prefix=prefix), engine(True, max_num_seqs=1))
    prefill_off = sum(b.num_prefill_tokens for b in b_off)
    prefill_on = sum(b.num_prefill_tokens for b in b_on)
    assert prefill_off == n * prompt
    assert prefill_off - prefill_on == (n - 1) * cached
    # the chunks still attend to the cached context
    assert sum(b.prefill_context_tokens for b in b_on) == sum(b.prefill_context_tokens for b in b_off)
    if cached:
        assert on.metrics.elapsed_s < off.metrics.elapsed_s
        assert on.metrics.requests_per_second > off.metrics.requests_per_second


def test_ttft_falls_throughput_rises_and_fewer_kv_blocks():
    reqs = requests(40, 1000, 50, prefix=900, rate_s=0.01)
    off, _ = run(reqs, engine(False, max_num_seqs=8, num_kv_blocks=2000))
    on, b_on = run(reqs, engine(True, max_num_seqs=8, num_kv_blocks=2000))
    assert on.requests.ttft_s[0] == pytest.approx(off.requests.ttft_s[0])  # the first request pays in full
    assert np.mean(on.requests.ttft_s[1:]) < 0.5 * np.mean(off.requests.ttft_s[1:])
    assert on.metrics.tokens_per_second > off.metrics.tokens_per_second
    assert on.metrics.kv_usage_max < off.metrics.kv_usage_max
    assert sum(b.num_prefill_tokens for b in b_on) >= 40 * 1000 - 39 * 896


def test_preemption_under_caching_frees_every_block():
    # a pool too small for all: requests are preempted and recomputed; at the end only the prefix stays
    reqs = requests(16, 300, 200, prefix=200)
    result, _ = run(reqs, engine(True, max_num_seqs=8, num_kv_blocks=60))
    assert result.metrics.num_preemptions > 0
    assert np.all(np.isfinite(result.requests.finish_s))


def test_refusals():
    with pytest.raises(ValueError, match="num_shared_prefix_tokens"):
        Request(0, 0.0, 10, 5, 10)
    with pytest.raises(ValueError, match="V1 scheduler only"):
        engine(True, batching="static")
    with pytest.raises(ValueError, match="one shared prefix"):
        simulate([Request(0, 0.0, 100, 5, 20), Request(1, 0.0, 100, 5, 40)], engine(True), RecordingCost())
