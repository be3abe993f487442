"""Whether a simulated run at a request rate keeps up: the steady-state test of ``perfmodel plan``.

A layout sustains the rate when, over the second half of the arrival window (or the part after 1.5 median
end-to-end latencies, at most the last quarter: the batch fills for about one latency), it samples output tokens
at least at ``SUSTAIN_FRACTION`` of the rate the arrivals ask for, and its queue does not grow: the mean TTFT of
the last quarter of requests (by arrival) exceeds the second quarter's by at most max(0.5 s, 50 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SUSTAIN_FRACTION = 0.95
QUEUE_GROWTH_S, QUEUE_GROWTH_FRACTION = 0.5, 0.5


@dataclass(frozen=True, kw_only=True)
class SteadyState:
    """reasons: why it does not keep up ('' none); achieved_requests_per_second: the rate times the delivered /
    asked output-token ratio; output_tokens_per_second at the load; latency_growth: mean TTFT, 4th / 2nd quarter."""

    reasons: tuple[str, ...]
    achieved_requests_per_second: float
    output_tokens_per_second: float
    latency_growth: float


def steady_state(result, request_rate: float) -> SteadyState:
    r = result.requests
    n = len(r)
    start_s, end_s = float(np.min(r.arrival_s)), float(np.max(r.arrival_s))
    # Judge the steady part: from half the arrival window, later when latencies are long (the batch is still
    # filling for about one end-to-end latency), at most the last quarter.
    window_s = end_s - start_s
    half = start_s + min(max(window_s / 2, 1.5 * float(np.median(r.e2e_s))), 0.75 * window_s)
    delivered = _tokens_between(r, half, end_s)
    # What the arrivals asked for in that window: the tokens of the requests that arrived one typical emission
    # lag earlier (median of (first token + finish) / 2 - sent), so that Poisson noise largely cancels.
    lag = float(np.median((r.first_token_s + r.finish_s) / 2 - r.sent_s))
    lo, hi = max(start_s, half - lag), max(start_s, end_s - lag)
    asked = (r.arrival_s >= lo) & (r.arrival_s < hi)
    offered_tps = float(np.sum(r.num_output_tokens[asked])) / (hi - lo) if hi > lo and asked.any() else math.nan
    if not offered_tps > 0:  # too few requests to tell: the whole window's average
        offered_tps = float(np.sum(r.num_output_tokens)) / (end_s - start_s)
    ratio = delivered / (end_s - half) / offered_tps
    achieved = request_rate * ratio
    order = np.argsort(r.arrival_s, kind="stable")
    ttft_q2 = float(np.mean(r.ttft_s[order[n // 4:n // 2]]))
    ttft_q4 = float(np.mean(r.ttft_s[order[(3 * n) // 4:]]))
    out_tps = min(ratio, 1.0) * offered_tps
    reasons = []
    if ratio < SUSTAIN_FRACTION:
        reasons.append(f"delivers {achieved:.3g} req/s < {SUSTAIN_FRACTION:g} x {request_rate:g}")
    if ttft_q4 - ttft_q2 > max(QUEUE_GROWTH_S, QUEUE_GROWTH_FRACTION * ttft_q2):
        reasons.append(f"queue grows (mean TTFT {ttft_q2:.3g} s -> {ttft_q4:.3g} s from 2nd to 4th quarter)")
    return SteadyState(reasons=tuple(reasons), achieved_requests_per_second=achieved, output_tokens_per_second=out_tps,
                       latency_growth=ttft_q4 / ttft_q2 if ttft_q2 > 0 else math.nan)


def _tokens_between(r, a_s: float, b_s: float) -> float:
    """Output tokens sampled in [a_s, b_s): each request's first token at ``first_token_s``, the others spread
    evenly up to ``finish_s`` (the per-request results keep no per-token times)."""
    first, finish = r.first_token_s, r.finish_s
    rest = (r.num_output_tokens - 1).astype(float)
    span = finish - first
    overlap = np.clip(np.minimum(finish, b_s) - np.maximum(first, a_s), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(span > 0, rest * overlap / span, np.where((finish >= a_s) & (finish < b_s), rest, 0.0))
    return float(np.sum((first >= a_s) & (first < b_s)) + np.sum(spread))
