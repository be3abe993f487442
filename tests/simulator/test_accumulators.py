"""Fixed-size accumulators: exact up to their capacity, within the sketch's stated bound past it."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.accumulators import DEFAULT_RELATIVE_ERROR, Distribution, LogBucketSketch
from simulator.metrics import _stats


def _data(weighted: bool):
    rng = np.random.default_rng(0)
    values = rng.lognormal(-4.0, 1.0, size=50_000)
    weights = rng.integers(0, 30, size=50_000) if weighted else np.ones(50_000, dtype=np.int64)
    return values, weights


def _fill(capacity: int, values, weights, weighted: bool) -> Distribution:
    d = Distribution(capacity=capacity)
    for k in range(0, len(values), 7_000):
        d.add(values[k:k + 7_000], weights[k:k + 7_000] if weighted else None)
    return d


@pytest.mark.parametrize("weighted", [False, True])
def test_exact_below_capacity_bit_for_bit(weighted):
    values, weights = _data(weighted)
    d = _fill(10**6, values, weights, weighted)
    assert d.is_exact
    assert d.stats() == _stats(values, weights)


@pytest.mark.parametrize("weighted", [False, True])
def test_sketch_percentiles_within_the_relative_error_and_exact_mean(weighted):
    values, weights = _data(weighted)
    d = _fill(1_000, values, weights, weighted)
    assert not d.is_exact
    exact, got = _stats(values, weights), d.stats()
    assert got["mean"] == pytest.approx(exact["mean"], rel=1e-12)
    for stat in ("median", "p90", "p99"):
        assert abs(got[stat] - exact[stat]) <= DEFAULT_RELATIVE_ERROR * exact[stat]


def test_sketches_merge_exactly_and_nan_is_left_out():
    a, b, whole = LogBucketSketch(), LogBucketSketch(), LogBucketSketch()
    x = np.random.default_rng(1).exponential(0.01, size=1_000)
    ones = np.ones(500, dtype=np.int64)
    a.add(x[:500], ones)
    b.add(x[500:], ones)
    whole.add(x, np.ones(1_000, dtype=np.int64))
    a.merge(b)
    assert np.array_equal(a.counts, whole.counts) and a.percentile(99) == whole.percentile(99)
    d = Distribution()
    d.add([1.0, float("nan"), 3.0])
    assert d.stats()["mean"] == 2.0
