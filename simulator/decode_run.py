"""Pure-decode steps planned at once (`DecodeRun`) and their per-step arithmetic over a decode cohort.

A run of k identical decode steps is described without simulating each one: per step, the sequences still
decoding and the KV tokens they read. The scheduler decides how long a run may be
(`ContinuousScheduler.plan_decode_run`); these functions only count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.batch import BatchStats
from simulator.cohort import DecodeCohort


@dataclass(frozen=True, slots=True)
class DecodeRun:
    """Pure-decode steps planned at once: per step, the sequences decoding and their KV tokens read. Short runs
    (at most SHORT_RUN steps, the common case between arrivals) keep them as Python lists, which are cheaper
    to build and to walk one step at a time than numpy arrays; longer ones as int64 arrays."""

    SHORT_RUN = 32

    num_steps: int
    num_seqs: list[int] | np.ndarray
    decode_context_tokens: list[int] | np.ndarray

    @property
    def is_short(self) -> bool:
        return self.num_steps <= self.SHORT_RUN

    @property
    def batch(self) -> BatchStats:
        """The steps as one BatchStats with array fields."""
        active = np.asarray(self.num_seqs, dtype=np.int64)
        zeros = np.zeros(self.num_steps, dtype=np.int64)
        return BatchStats(num_prefill_tokens=zeros, num_decode_tokens=active, prefill_attention_pairs=zeros,
                          prefill_context_tokens=zeros,
                          decode_context_tokens=np.asarray(self.decode_context_tokens, dtype=np.int64),
                          num_sampled_tokens=active, num_seqs=active)


def short_run_steps(cohort: DecodeCohort, k: int, first: int,
                    finishers: dict[int, int] | None) -> tuple[list[int], list[int]]:
    """`run_steps` as Python lists, for a few steps (integer sums: the same numbers)."""
    n, total = len(cohort.base), cohort.sum_computed_tokens
    if finishers is None or k <= first:  # every member decodes in every step
        return [n] * k, list(range(total + n, total + n * (k + 1), n))
    order = sorted(finishers.items(), key=lambda item: item[1])
    base, counter = cohort.base, cohort.counter
    active: list[int] = []
    context: list[int] = []
    gone = gone_computed = 0  # members whose last step is before step j, and their KV tokens now
    for j in range(1, k + 1):
        while gone < len(order) and order[gone][1] < j:
            gone_computed += base[order[gone][0]] + counter
            gone += 1
        active.append(n - gone)
        context.append(total - gone_computed + j * (n - gone))
    return active, context


def run_steps(cohort: DecodeCohort, k: int, first: int,
              finishers: dict[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per step 1..k: the members decoding, and the KV tokens they read (their new ones included).
    `first`: steps until the cohort's first finish; `finishers`: request id -> last step, for (at least) every
    member whose last step is before k (None when no member finishes before step k)."""
    n, total = len(cohort.base), cohort.sum_computed_tokens
    if finishers is None or k <= first:  # every member decodes in every step
        return np.full(k, n, dtype=np.int64), np.arange(total + n, total + n * (k + 1), n, dtype=np.int64)
    # member i decodes in steps 1..f_i; at step j its context is (KV tokens now) + j.
    # Only the members that finish can leave, so only they are looked at (not the whole cohort).
    order = sorted(finishers.items(), key=lambda item: item[1])
    f = np.array([last for _, last in order], dtype=np.int64)
    gone_computed = np.zeros(len(order) + 1, dtype=np.int64)  # KV tokens now of the first i to leave
    base, counter = cohort.base, cohort.counter
    gone_computed[1:] = np.cumsum([base[req] + counter for req, _ in order])
    j = np.arange(1, k + 1, dtype=np.int64)
    gone = np.searchsorted(f, j, side="left")  # members whose last step is before step j
    active = n - gone
    return active, (total - gone_computed[gone]) + j * active
