"""Requests drawn lazily chunk by chunk are the ones drawn at once."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.workload import LengthDistribution, arrival_times, stream_requests

DISTRIBUTIONS = [LengthDistribution.fixed(100), LengthDistribution.lognormal(200, 0.8),
                 LengthDistribution.uniform(10, 900), LengthDistribution.normal(300, 100),
                 LengthDistribution(kind="empirical", values=(3, 5, 90))]


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda d: d.kind)
@pytest.mark.parametrize("rate", [math.inf, 7.0])
def test_chunked_draws_equal_whole_draws(dist, rate):
    n, outputs = 1000, LengthDistribution.lognormal(50, 1.0)
    rng = np.random.default_rng(4)
    prompts, generated = dist.sample(n, rng), outputs.sample(n, rng)
    arrivals = arrival_times(n, np.random.default_rng([4, 3]), request_rate=rate, burstiness=0.5)
    stream = stream_requests(n, dist, outputs, length_seed=4, arrival_seed=[4, 3], request_rate=rate,
                             burstiness=0.5, chunk_size=77)
    assert len(stream) == n
    for _ in range(2):  # a stream starts again from the beginning
        chunks = list(stream.chunks())
        assert np.array_equal(np.concatenate([c.num_prompt_tokens for c in chunks]), prompts)
        assert np.array_equal(np.concatenate([c.num_output_tokens for c in chunks]), generated)
        assert np.array_equal(np.concatenate([c.arrival_s for c in chunks]), arrivals)
        assert np.array_equal(np.concatenate([c.position for c in chunks]), np.arange(n))
