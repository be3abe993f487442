"""Metrics taken from each request as it finishes (`MetricsCollector`), for runs that keep no per-request table.

Per request: TTFT, TPOT and E2E go to `simulator.accumulators.Distribution`s, the token counts and the first
send / last finish to running totals; inter-token gaps come from the schedulers' `ItlRecorder`, flushed into
a Distribution as they pile up. The metrics are those of `simulator.metrics.compute_metrics` (the same
numbers, bit for bit, while every distribution is exact; see `simulator.accumulators` past that).
Per-request results are kept only when asked (`keep_requests`), as arrays indexed by input position.
"""

from __future__ import annotations

import math

import numpy as np

from simulator.accumulators import DEFAULT_CAPACITY, Distribution
from simulator.itl import ItlRecorder
from simulator.metrics import Metrics
from simulator.request import RequestResults, RequestTable

FLUSH = 1 << 16
"""Per-request values buffered in Python lists before they go to the distributions."""


class MetricsCollector:
    """Takes a finished request's numbers from the table (then its slot may be reused)."""

    def __init__(self, table: RequestTable, itl: ItlRecorder, num_requests: int, *, keep_requests: bool,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        self.table = table
        self.itl = itl
        self.num_finished = 0
        self.total_input_tokens = 0
        self.total_output_tokens = 0
        self.first_sent_s = math.inf
        self.last_finish_s = -math.inf
        self.ttft = Distribution(capacity)
        self.tpot = Distribution(capacity)
        self.e2e = Distribution(capacity)
        self.itl_dist = Distribution(capacity)
        self._finished: list[tuple] = []  # (sent, first token, finish, prompt, output) per finished request
        self._results: dict[str, np.ndarray] | None = None
        if keep_requests:
            n = num_requests
            self._results = {"id": np.zeros(n, dtype=np.int64), "arrival_s": np.zeros(n), "sent_s": np.zeros(n),
                             "first_token_s": np.zeros(n), "finish_s": np.zeros(n),
                             "num_prompt_tokens": np.zeros(n, dtype=np.int64),
                             "num_output_tokens": np.zeros(n, dtype=np.int64),
                             "replica": np.zeros(n, dtype=np.int64), "num_preemptions": np.zeros(n, dtype=np.int64)}

    def on_finish(self, slot: int) -> None:
        t = self.table
        self._finished.append((t.sent_s[slot], t.first_token_s[slot], t.finish_s[slot], t.num_prompt_tokens[slot],
                               t.num_output_tokens[slot]))
        if self._results is not None:
            p, r = t.position[slot], self._results
            for name in r:
                r[name][p] = getattr(t, name if name != "id" else "ids")[slot]
        t.release(slot)
        if len(self._finished) >= FLUSH:
            self.flush()

    def flush(self) -> None:
        """Move the buffered requests' numbers into the distributions (vectorised: the same IEEE operations as
        `RequestResults`' properties)."""
        if self._finished:
            sent, first, finish, prompt, out = (np.asarray(c) for c in zip(*self._finished))
            self._finished.clear()
            self.num_finished += len(sent)
            self.total_input_tokens += int(np.sum(prompt))
            self.total_output_tokens += int(np.sum(out))
            self.first_sent_s = min(self.first_sent_s, float(np.min(sent)))
            self.last_finish_s = max(self.last_finish_s, float(np.max(finish)))
            self.ttft.add(first - sent)
            self.e2e.add(finish - sent)
            generated = out.astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                self.tpot.add(np.where(generated > 1, (finish - first) / (generated - 1), np.nan))
        itl = self.itl
        if itl.gap_s or itl.run_end_s:
            gaps, counts = itl.arrays()
            self.itl_dist.add(gaps, counts)
            itl.clear()

    def results(self) -> RequestResults | None:
        return None if self._results is None else RequestResults(**self._results)

    def metrics(self, *, num_steps: int, sum_num_seqs: int, kv_usage_mean: float, kv_usage_max: float,
                num_preemptions: int, padding_tokens: int, computed_tokens: int) -> Metrics:
        self.flush()
        n = self.num_finished
        duration = float(self.last_finish_s - self.first_sent_s) if n else 0.0
        total_in, total_out = self.total_input_tokens, self.total_output_tokens
        rate = (lambda x: x / duration) if duration > 0 else (lambda x: float("nan"))
        fields: dict[str, float] = {}
        for name, dist in (("ttft", self.ttft), ("tpot", self.tpot), ("itl", self.itl_dist), ("e2e", self.e2e)):
            for stat, value in dist.stats().items():
                fields[f"{name}_s_{stat}"] = value
        return Metrics(
            num_requests=n, elapsed_s=duration, total_input_tokens=total_in, total_output_tokens=total_out,
            requests_per_second=rate(n), input_tokens_per_second=rate(total_in),
            output_tokens_per_second=rate(total_out), tokens_per_second=rate(total_in + total_out), **fields,
            num_steps=num_steps, mean_batch_size=sum_num_seqs / num_steps if num_steps else 0.0,
            kv_usage_mean=kv_usage_mean, kv_usage_max=kv_usage_max, num_preemptions=num_preemptions,
            padding_waste_fraction=padding_tokens / computed_tokens if computed_tokens else 0.0)
