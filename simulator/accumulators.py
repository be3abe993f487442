"""Fixed-size accumulators for per-request and per-token metrics: memory that does not grow with the run.

`Distribution` takes (value, weight) pairs in any order and answers vLLM's statistics (mean, median, p90, p99;
numpy's linear percentiles of the list where each value appears `weight` times):

- exact while it holds at most `capacity` pairs (2**20 by default: 8 MB of values, 4 MB of weights when they
  are not all 1; computing the statistics then takes ~100 MB for a moment): the pairs are kept as numpy arrays
  and the statistics are `simulator.metrics._stats` of them, bit for bit what a run that kept everything gives;
- past that, a log-bucket quantile sketch (in the manner of DDSketch, Masson et al., VLDB 2019): a positive
  value v falls in bucket i = ceil(log(v) / log(gamma)), gamma = (1 + a) / (1 - a), and stands for
  2 gamma**i / (gamma + 1), which is within a relative error a of every value of the bucket. A percentile is
  the linear interpolation between the values at two ranks, each within a of the exact one, so it is within a
  relative error a of the exact percentile (a = 1e-4 by default: the 4th significant digit can move by one).
  Values below `MIN_VALUE_S` (1 ns) count as 0 (absolute error < 1 ns); values above `MAX_VALUE_S` are clamped
  (the bound then does not hold: 10**7 s is 116 days). Counts are integers, so sketches merge exactly.
  The mean stays exact (a compensated running sum of value x weight, not the buckets).
"""

from __future__ import annotations

import math

import numpy as np

from simulator.metrics import _STATS, _stats

MIN_VALUE_S = 1e-9
MAX_VALUE_S = 1e7
DEFAULT_CAPACITY = 1 << 20
DEFAULT_RELATIVE_ERROR = 1e-4


class LogBucketSketch:
    """Counts of non-negative values in log-spaced buckets of relative width `relative_error` (module docstring)."""

    __slots__ = ("relative_error", "_log_gamma", "_offset", "counts", "zeros")

    def __init__(self, relative_error: float = DEFAULT_RELATIVE_ERROR) -> None:
        if not 0 < relative_error < 1:
            raise ValueError("relative_error must be between 0 and 1")
        gamma = (1 + relative_error) / (1 - relative_error)
        self.relative_error = relative_error
        self._log_gamma = math.log(gamma)
        self._offset = math.ceil(math.log(MIN_VALUE_S) / self._log_gamma)
        size = math.ceil(math.log(MAX_VALUE_S) / self._log_gamma) - self._offset + 1
        self.counts = np.zeros(size, dtype=np.int64)
        self.zeros = 0  # values below MIN_VALUE_S

    def add(self, values: np.ndarray, weights: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.int64)
        small = values < MIN_VALUE_S
        self.zeros += int(np.sum(weights[small]))
        v = np.minimum(values[~small], MAX_VALUE_S)
        index = np.ceil(np.log(v) / self._log_gamma).astype(np.int64) - self._offset
        np.clip(index, 0, len(self.counts) - 1, out=index)
        self.counts += np.bincount(index, weights=weights[~small], minlength=len(self.counts)).astype(np.int64)

    def merge(self, other: "LogBucketSketch") -> None:
        assert other.relative_error == self.relative_error, "sketches of different accuracy do not merge"
        self.counts += other.counts
        self.zeros += other.zeros

    @property
    def total(self) -> int:
        return self.zeros + int(np.sum(self.counts))

    def _value_at_rank(self, cum: np.ndarray, rank: int) -> float:
        """The value standing for the rank-th (0-based) element of the sorted list."""
        if rank < self.zeros:
            return 0.0
        i = int(np.searchsorted(cum, rank - self.zeros, side="right"))
        gamma = math.exp(self._log_gamma)
        return 2.0 * gamma ** (i + self._offset) / (gamma + 1.0)

    def percentile(self, q: float) -> float:
        """numpy's linear percentile of the counted values, within the relative error."""
        total = self.total
        if total == 0:
            return float("nan")
        cum = np.cumsum(self.counts)
        pos = q / 100.0 * (total - 1)
        lo = int(math.floor(pos))
        v_lo = self._value_at_rank(cum, lo)
        v_hi = self._value_at_rank(cum, min(lo + 1, total - 1))
        return float(v_lo + (v_hi - v_lo) * (pos - lo))


class Distribution:
    """(value, weight) pairs -> mean, median, p90, p99: exact up to `capacity` pairs, then a sketch whose
    percentiles are within `relative_error` (module docstring). NaN values are left out (vLLM's TPOT of
    single-token requests)."""

    __slots__ = ("capacity", "relative_error", "_values", "_weights", "_num_kept", "_sketch", "_sum", "_comp",
                 "_count")

    def __init__(self, capacity: int = DEFAULT_CAPACITY, relative_error: float = DEFAULT_RELATIVE_ERROR) -> None:
        self.capacity = capacity
        self.relative_error = relative_error
        self._values: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self._num_kept = 0
        self._sketch: LogBucketSketch | None = None
        self._sum = 0.0   # Neumaier-compensated sum of value x weight (used once sketched)
        self._comp = 0.0
        self._count = 0

    @property
    def is_exact(self) -> bool:
        return self._sketch is None

    def add(self, values, weights=None) -> None:
        """Pairs (values[i], weights[i]); without weights every value counts once (and no weights are kept)."""
        values = np.asarray(values, dtype=np.float64)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.int64)
        keep = ~np.isnan(values)
        if not keep.all():
            values = values[keep]
            weights = None if weights is None else weights[keep]
        if len(values) == 0:
            return
        if weights is None:
            self._add_sum(float(np.sum(values)))
            self._count += len(values)
        else:
            self._add_sum(float(np.sum(values * weights)))
            self._count += int(np.sum(weights))
        if self._sketch is not None:
            self._sketch.add(values, self._ones(values) if weights is None else weights)
            return
        self._values.append(values)
        self._weights.append(None if weights is None else weights.astype(np.int32))
        self._num_kept += len(values)
        if self._num_kept > self.capacity:
            values, weights = self.arrays()
            self._values, self._weights, self._num_kept = [], [], 0
            self._sketch = LogBucketSketch(self.relative_error)
            self._sketch.add(values, weights)

    @staticmethod
    def _ones(values: np.ndarray) -> np.ndarray:
        return np.ones(len(values), dtype=np.int64)

    def _add_sum(self, x: float) -> None:
        t = self._sum + x
        if abs(self._sum) >= abs(x):
            self._comp += (self._sum - t) + x
        else:
            self._comp += (x - t) + self._sum
        self._sum = t

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept pairs (exact mode only)."""
        assert self._sketch is None, "a sketched distribution keeps no pairs"
        if not self._values:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        weights = [self._ones(v) if w is None else w.astype(np.int64) for v, w in zip(self._values, self._weights)]
        return np.concatenate(self._values), np.concatenate(weights)

    def stats(self) -> dict[str, float]:
        if self._sketch is None:
            values, weights = self.arrays()
            return _stats(values, weights)
        if self._count == 0:
            return {s: float("nan") for s in _STATS}
        sketch = self._sketch
        return {"mean": (self._sum + self._comp) / self._count, "median": sketch.percentile(50),
                "p90": sketch.percentile(90), "p99": sketch.percentile(99)}
