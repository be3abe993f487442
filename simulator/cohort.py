"""A cohort: decoding requests that take their steps together, kept as O(1) aggregates.

Every member of a cohort computes exactly one token per cohort step, so a member's KV length is
`base + counter`, where `counter` counts the cohort's steps and `base` is fixed when the member joins.
Sums over members are then updated in O(1) per step, whatever the cohort's size::

    counter:                  0    1    2    3
    member a (joined at 0):   40   41   42   43      base_a = 40
    member b (joined at 2):             17   18      base_b = 15
    sum of KV lengths = sum_base + len * counter

A member computes its token number `base + counter` (0-based) in the next step; it needs a new KV block when
that token opens one, i.e. when (base + counter) % block_size == 0, so the blocks a step needs are
`residue_counts[-counter % block_size]` (members counted by base % block_size).
A member finishes when its KV length reaches `prompt + output - 1` tokens (the last sampled token is never
computed), i.e. at counter `finish_kv_tokens - base`; a heap keyed on that counter gives the next finish.
"""

from __future__ import annotations

import heapq

import numpy as np


class DecodeCohort:
    """Decoding requests that step together (all of a replica's without pipeline parallelism)."""

    __slots__ = ("block_size", "counter", "base", "sum_base", "residue_counts", "finish_heap", "last_emit_s",
                 "_finish_kv_tokens")

    def __init__(self, block_size: int, finish_kv_tokens: list[int], last_emit_s: float = 0.0) -> None:
        self.block_size = block_size
        self.counter = 0
        self.base: dict[int, int] = {}          # request id -> KV tokens - counter
        self.sum_base = 0
        self.residue_counts = [0] * block_size  # members by base % block_size
        self.finish_heap: list[tuple[int, int]] = []  # (counter at which it finishes, request id); lazy deletes
        self.last_emit_s = last_emit_s          # when the members' latest tokens were sampled
        self._finish_kv_tokens = finish_kv_tokens  # per request id: prompt + output - 1

    def __len__(self) -> int:
        return len(self.base)

    def add(self, req: int, num_computed_tokens: int) -> None:
        b = num_computed_tokens - self.counter
        self.base[req] = b
        self.sum_base += b
        self.residue_counts[b % self.block_size] += 1
        heapq.heappush(self.finish_heap, (self._finish_kv_tokens[req] - b, req))

    def remove(self, req: int) -> int:
        """Take a member out; return its KV length (tokens computed)."""
        b = self.base.pop(req)
        self.sum_base -= b
        self.residue_counts[b % self.block_size] -= 1
        return b + self.counter

    def num_computed_tokens(self, req: int) -> int:
        return self.base[req] + self.counter

    @property
    def sum_computed_tokens(self) -> int:
        return self.sum_base + len(self.base) * self.counter

    def num_new_blocks(self, ahead: int = 0) -> int:
        """KV blocks the cohort's step number `ahead` (0 = the next one) needs."""
        return self.residue_counts[-(self.counter + ahead) % self.block_size]

    def new_blocks_per_step(self, num_steps: int) -> np.ndarray:
        """KV blocks needed by each of the next `num_steps` steps."""
        counts = np.asarray(self.residue_counts, dtype=np.int64)
        return counts[(-(self.counter + np.arange(num_steps, dtype=np.int64))) % self.block_size]

    def blocks_over(self, first: int, num_steps: int) -> tuple[int, int]:
        """For the steps ahead = first .. first + num_steps - 1 (0 = the next one): the blocks they open in
        total, and the sum over those steps of the blocks opened up to and including each one, i.e.
        sum over a of need(a) * (first + num_steps - a). O(block_size): the needs repeat every block_size."""
        bs, counts, counter = self.block_size, self.residue_counts, self.counter
        end = first + num_steps
        total = weighted = 0
        for a0 in range(first, min(first + bs, end)):
            need = counts[-(counter + a0) % bs]
            if need:
                last = (end - 1 - a0) // bs            # a = a0 + bs * t, t = 0..last
                count = last + 1
                total += need * count
                weighted += need * (count * (end - a0) - bs * last * (last + 1) // 2)
        return total, weighted

    def next_finish_counter(self) -> int | None:
        """The counter value after which the first member finishes (None when empty)."""
        heap, base, fin = self.finish_heap, self.base, self._finish_kv_tokens
        while heap:
            fc, req = heap[0]
            b = base.get(req)
            if b is not None and b + fc == fin[req]:
                return fc
            heapq.heappop(heap)
        return None

    def finishing_within(self, num_steps: int) -> dict[int, int]:
        """Members whose last step is among the next `num_steps` ones: request id -> that step (1 = the next).
        Walks only the heap entries at or below the bound (a heap's children are never smaller than their
        parent), so the cost grows with the members returned, not with the cohort's size."""
        heap, base, fin, counter = self.finish_heap, self.base, self._finish_kv_tokens, self.counter
        limit = counter + num_steps
        size = len(heap)
        found: dict[int, int] = {}
        stack = [0] if size else []
        while stack:
            i = stack.pop()
            fc, req = heap[i]
            if fc > limit:
                continue
            b = base.get(req)
            if b is not None and b + fc == fin[req]:  # skip lazily deleted entries (their children may count)
                found[req] = fc - counter
            child = 2 * i + 1
            if child < size:
                stack.append(child)
                if child + 1 < size:
                    stack.append(child + 1)
        return found

    def advance(self, num_steps: int) -> list[int]:
        """Count `num_steps` steps; remove and return the members that finished (their KV length is
        `finish_kv_tokens`). The caller never steps past the first finish."""
        self.counter += num_steps
        heap = self.finish_heap
        if not heap or heap[0][0] > self.counter:  # nobody's last step (the heap's least counter is later)
            return []
        finished = []
        while True:
            fc = self.next_finish_counter()
            if fc is None or fc > self.counter:
                break
            assert fc == self.counter, "a cohort stepped past a member's last token"
            req = heapq.heappop(self.finish_heap)[1]
            self.remove(req)
            finished.append(req)
        return finished

    def absorb(self, other: "DecodeCohort") -> None:
        """Move every member of `other` into this cohort (same KV lengths)."""
        for req, b in other.base.items():
            self.add(req, b + other.counter)
        other.base.clear()
        other.sum_base = 0
        other.residue_counts = [0] * self.block_size
        other.finish_heap = []
