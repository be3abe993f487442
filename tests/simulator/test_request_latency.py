"""A request reaches its engine `request_latency_s` after the client sends it (an API server's path)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.batch import LinearStepCost
from simulator.config import EngineConfig
from simulator.request import requests_from_arrays
from simulator.run import simulate

ENGINE = EngineConfig(max_num_seqs=8, max_num_batched_tokens=512, num_kv_blocks=1000)


def _requests(n: int, rate_gap_s: float = 0.0):
    return requests_from_arrays(np.arange(n) * rate_gap_s, np.full(n, 100), np.full(n, 20))


@pytest.mark.parametrize("concurrency", [1, 4, None])
def test_latency_adds_to_ttft_and_e2e_and_delays_the_engine(concurrency):
    base = simulate(_requests(12, 0.05), ENGINE, LinearStepCost(), max_concurrency=concurrency)
    late = simulate(_requests(12, 0.05), ENGINE, LinearStepCost(), max_concurrency=concurrency,
                    request_latency_s=0.03)
    if concurrency == 1:  # one request at a time: every latency grows by exactly the delay
        np.testing.assert_allclose(late.requests.ttft_s, base.requests.ttft_s + 0.03, rtol=0, atol=1e-9)
        np.testing.assert_allclose(late.requests.e2e_s, base.requests.e2e_s + 0.03, rtol=0, atol=1e-9)
    assert np.all(late.requests.first_token_s >= late.requests.sent_s + 0.03 - 1e-12)
    assert late.metrics.ttft_s_mean > base.metrics.ttft_s_mean


def test_zero_latency_is_bit_identical_and_negative_is_refused():
    a = simulate(_requests(20, 0.01), ENGINE, LinearStepCost())
    b = simulate(_requests(20, 0.01), ENGINE, LinearStepCost(), request_latency_s=0.0)
    assert a.metrics == b.metrics
    with pytest.raises(ValueError, match="request_latency_s"):
        simulate(_requests(2), ENGINE, LinearStepCost(), request_latency_s=-1.0)
