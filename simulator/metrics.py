"""Benchmark metrics with vLLM's definitions; SI units (seconds) inside.

Naming scheme: `<quantity>_s_<statistic>` for latencies (`ttft_s_mean`, `tpot_s_p99`, `itl_s_median`,
`e2e_s_p90`), throughputs as in vLLM's `benchmark_throughput` (`requests_per_second`, `tokens_per_second` =
input + output tokens per second, `input_tokens_per_second`, `output_tokens_per_second`).
`to_vllm_dict()` gives `benchmark_serving`'s names in milliseconds (`mean_ttft_ms`, `p99_itl_ms`, ...).

Definitions (as vLLM's benchmark computes them):
- elapsed_s: first request sent -> last request finished.
- TTFT: first token sampled - request sent. E2E: last token sampled - request sent.
- TPOT: (E2E - TTFT) / (output tokens - 1), per request, excluding single-token requests; stats over requests.
- ITL: every gap between two consecutive tokens of a request, pooled over all requests; stats over gaps.
  The simulator keeps no per-token objects: all tokens sampled in one step with the same previous-token time
  share one gap, so ITLs are stored as (gap, number of tokens) pairs and the statistics are the weighted ones,
  equal to numpy's (linear) percentiles of the expanded list.
- Percentiles use numpy's default linear interpolation; median = p50.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from simulator.request import RequestResults

_STATS = ("mean", "median", "p90", "p99")


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """numpy's linear percentile of the list where values[i] appears weights[i] times (integer weights)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    return _sorted_percentile(values[order], np.asarray(weights)[order], q)


def _sorted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """`weighted_percentile` of pairs already sorted by value. How equal values are ordered among themselves
    does not matter: the element at each rank of the expanded list is the same value either way."""
    keep = weights > 0
    if not keep.all():
        values, weights = values[keep], weights[keep]
    if len(values) == 0:
        return float("nan")
    cum = np.cumsum(weights)
    pos = q / 100.0 * (cum[-1] - 1)
    lo = int(np.floor(pos))
    frac = pos - lo
    v_lo = values[np.searchsorted(cum, lo, side="right")]
    v_hi = values[np.searchsorted(cum, min(lo + 1, cum[-1] - 1), side="right")]
    return float(v_lo + (v_hi - v_lo) * frac)


def _stats(values: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """Mean and percentiles from one sort (a million values: ~10 ms, where a sort per statistic took 0.4 s).
    The mean sums value x weight in a canonical order (by value, then weight), so it does not depend on how the
    pairs were recorded; with unit weights that is the sorted values' order."""
    values = np.asarray(values, dtype=np.float64)
    if weights is None:
        values = np.sort(values[~np.isnan(values)])
        weights = np.ones(len(values), dtype=np.int64)
        products = values
    else:
        order = np.lexsort((weights, values))
        values, weights = values[order], np.asarray(weights)[order]
        products = values * weights
    total = float(np.sum(weights))
    if total == 0:
        return {s: float("nan") for s in _STATS}
    return {"mean": float(np.cumsum(products)[-1] / total),
            "median": _sorted_percentile(values, weights, 50),
            "p90": _sorted_percentile(values, weights, 90),
            "p99": _sorted_percentile(values, weights, 99)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """Aggregate results of one simulation (see the module docstring for definitions)."""

    num_requests: int
    elapsed_s: float
    total_input_tokens: int
    total_output_tokens: int
    requests_per_second: float
    input_tokens_per_second: float
    output_tokens_per_second: float
    tokens_per_second: float
    ttft_s_mean: float
    ttft_s_median: float
    ttft_s_p90: float
    ttft_s_p99: float
    tpot_s_mean: float
    tpot_s_median: float
    tpot_s_p90: float
    tpot_s_p99: float
    itl_s_mean: float
    itl_s_median: float
    itl_s_p90: float
    itl_s_p99: float
    e2e_s_mean: float
    e2e_s_median: float
    e2e_s_p90: float
    e2e_s_p99: float
    num_steps: int                  # engine steps, all replicas
    mean_batch_size: float          # sequences per step, averaged over steps
    kv_usage_mean: float            # fraction of KV blocks in use, averaged over steps
    kv_usage_max: float
    num_preemptions: int
    padding_waste_fraction: float   # static batching: padded tokens / computed tokens (0 for continuous)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def to_vllm_dict(self) -> dict[str, float]:
        """vLLM `benchmark_serving` JSON names and units (ms)."""
        out: dict[str, float] = {
            "completed": self.num_requests, "duration": self.elapsed_s,
            "total_input_tokens": self.total_input_tokens, "total_output_tokens": self.total_output_tokens,
            "request_throughput": self.requests_per_second, "output_throughput": self.output_tokens_per_second,
            "total_token_throughput": self.tokens_per_second,
        }
        for ours, theirs in (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("e2e", "e2el")):
            for stat in _STATS:
                out[f"{stat}_{theirs}_ms"] = getattr(self, f"{ours}_s_{stat}") * 1e3
        return out


def compute_metrics(results: RequestResults, itl_gap_s: np.ndarray, itl_count: np.ndarray, *, num_steps: int,
                    sum_num_seqs: int, kv_usage_mean: float, kv_usage_max: float,
                    num_preemptions: int, padding_tokens: int, computed_tokens: int) -> Metrics:
    n = len(results)
    duration = float(np.max(results.finish_s) - np.min(results.sent_s)) if n else 0.0
    total_in = int(np.sum(results.num_prompt_tokens))
    total_out = int(np.sum(results.num_output_tokens))
    rate = (lambda x: x / duration) if duration > 0 else (lambda x: float("nan"))
    fields: dict[str, float] = {}
    for name, (values, weights) in {"ttft": (results.ttft_s, None), "tpot": (results.tpot_s, None),
                                    "itl": (itl_gap_s, itl_count), "e2e": (results.e2e_s, None)}.items():
        for stat, value in _stats(values, weights).items():
            fields[f"{name}_s_{stat}"] = value
    return Metrics(
        num_requests=n, elapsed_s=duration, total_input_tokens=total_in, total_output_tokens=total_out,
        requests_per_second=rate(n), input_tokens_per_second=rate(total_in),
        output_tokens_per_second=rate(total_out), tokens_per_second=rate(total_in + total_out), **fields,
        num_steps=num_steps, mean_batch_size=sum_num_seqs / num_steps if num_steps else 0.0,
        kv_usage_mean=kv_usage_mean, kv_usage_max=kv_usage_max,
        num_preemptions=num_preemptions,
        padding_waste_fraction=padding_tokens / computed_tokens if computed_tokens else 0.0)
