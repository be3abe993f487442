"""What the continuous-batching schedulers share (`RunningSet`): the waiting queue, the running set kept as
decode cohorts, the KV block pool, admission, recompute preemption, completion of a step, the prefix cache, and
the planned runs of pure-decode steps. A scheduler (`simulator.scheduler.V1Scheduler`,
`simulator.scheduler_v0.V0Scheduler`) adds its step rule: `schedule()`, how decodes get their blocks when the
pool runs out (`_allocate_decodes_preempting`), and two questions a planned decode run asks
(`_may_prefill`, `_run_free_blocks`). The rules of each engine generation are in those modules' docstrings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from simulator.batch import BatchStats
from simulator.cohort import DecodeCohort
from simulator.config import EngineConfig
from simulator.decode_run import DecodeRun, run_steps, short_run_steps
from simulator.itl import ItlRecorder
from simulator.kv_blocks import KVBlockPool
from simulator.request import RequestTable
from simulator.scheduler_output import SchedulerOutput
from simulator.waiting_queue import WaitingQueue


class RunningSet(WaitingQueue, ABC):
    """The bookkeeping of one continuous-batching scheduler: waiting queue, running set, KV block pool (see the
    module docstring); subclasses give the step rule."""

    def __init__(self, config: EngineConfig, table: RequestTable, itl: ItlRecorder) -> None:
        self.config = config
        self.table = table
        self.itl = itl
        self.pool = KVBlockPool(config.num_kv_blocks, config.block_size)
        super().__init__()
        self.prefilling: list[int] = []       # admitted, prompt not done; admission order
        self.ready: list[DecodeCohort] = []   # decoding cohorts not in flight
        self.in_flight: set[int] = set()      # prefilling requests inside a batch not yet returned (PP)
        self.num_running = 0                  # admitted, not finished or preempted (in flight included)
        self.num_preemptions = 0
        self._next_admission = 0
        self.num_cached_prefix_tokens = 0     # prefix tokens whose KV blocks are cached (block-aligned)
        if config.enable_prefix_caching and len(set(table.num_shared_prefix_tokens) - {0}) > 1:
            raise ValueError("prefix caching models one shared prefix: give every request with a shared prefix "
                             "the same num_shared_prefix_tokens")

    # ---- queue state -------------------------------------------------------------------------------------
    def has_schedulable_work(self) -> bool:
        if self.waiting:
            return True
        for c in self.ready:  # (a loop, not any(): the simulator asks this once per arrival)
            if c.base:
                return True
        return bool(self.prefilling) and any(i not in self.in_flight for i in self.prefilling)

    def _new_cohort(self, last_emit_s: float) -> DecodeCohort:
        return DecodeCohort(self.config.block_size, self.table.finish_kv_tokens, last_emit_s)

    # ---- the step rule (per engine generation) -----------------------------------------------------------
    @abstractmethod
    def schedule(self) -> SchedulerOutput:
        """Choose the next step's tokens (allocating their KV blocks, preempting if need be)."""

    @abstractmethod
    def _allocate_decodes_preempting(self, cohorts: list[DecodeCohort], preempted: list[int]) -> bool:
        """Give the decoding requests of `cohorts` their blocks when the pool cannot give them all at once,
        preempting as the generation does; True when the walk stopped at a request that preempted itself."""

    @abstractmethod
    def _may_prefill(self) -> bool:
        """Whether the next step may compute a prompt chunk (then it is not a pure decode)."""

    @abstractmethod
    def _run_free_blocks(self) -> int:
        """KV blocks a planned decode run may open without any step of it preempting."""

    # ---- one step ----------------------------------------------------------------------------------------
    def _make_output(self, cohorts: list[DecodeCohort], num_decode: int, decode_context: int, ids: list[int],
                     news: list[int], preempted: list[int]) -> SchedulerOutput:
        """Check the step's invariants, mark its prompt chunks in flight and describe it: `cohorts` decode
        `num_decode` sequences reading `decode_context` KV tokens; request ids[k] computes news[k] tokens."""
        t = self.table
        assert self.num_running <= self.config.max_num_seqs, "max_num_seqs exceeded"
        assert self.pool.num_free_blocks >= 0, "KV blocks overspent"
        num_prefill = pairs = prefill_context = num_sampled = 0
        for i, new in zip(ids, news):
            computed = t.num_computed_tokens[i]
            num_prefill += new
            pairs += new * (computed + (new + 1) / 2)
            prefill_context += computed + new
            if computed + new == t.num_target_tokens[i]:
                num_sampled += 1
            self.in_flight.add(i)
        batch = BatchStats(num_prefill_tokens=num_prefill, num_decode_tokens=num_decode,
                           prefill_attention_pairs=float(pairs), prefill_context_tokens=prefill_context,
                           decode_context_tokens=decode_context, num_sampled_tokens=num_sampled + num_decode,
                           num_seqs=num_decode + len(ids))
        return SchedulerOutput(batch, tuple(cohorts), num_decode, tuple(ids), tuple(news), tuple(preempted))

    # ---- admission and the prefix cache ------------------------------------------------------------------
    def _admit(self, req: int, num_new: int, ids: list[int], news: list[int]) -> None:
        """A waiting request joins the running set (its KV slots already allocated) and prefills ``num_new``
        prompt tokens this step."""
        self.table.admission_order[req] = self._next_admission
        self._next_admission += 1
        self.num_running += 1
        self.prefilling.append(req)
        ids.append(req)
        news.append(num_new)

    def _cache_hit_tokens(self, req: int) -> int:
        """Prompt tokens of `req` already in the prefix cache: the cached prefix if `req` shares it, else 0."""
        return self.num_cached_prefix_tokens if self.table.num_shared_prefix_tokens[req] else 0

    def _maybe_cache_prefix(self, req: int, computed: int) -> None:
        """Cache the shared prefix once `req` has computed its full blocks: they become the cache's (`req`
        no longer frees them) and stay resident (module docstring)."""
        bs = self.config.block_size
        prefix = self.table.num_shared_prefix_tokens[req] // bs * bs
        if prefix and computed >= prefix and not self.num_cached_prefix_tokens:
            self.num_cached_prefix_tokens = prefix
            self.table.num_shared_blocks[req] = prefix // bs

    # ---- preemption --------------------------------------------------------------------------------------
    def _preempt_for_a_block(self, order: list, req: int, preempted: list[int]) -> bool:
        """Preempt from the tail of ``order`` (the most recently admitted first) until a KV block is free; True
        when ``req`` itself had to go (the walk over ``order`` ends there)."""
        while self.pool.num_free_blocks < 1:
            _, victim, victim_cohort = order.pop()
            self._preempt(victim, victim_cohort)
            preempted.append(victim)
            if victim == req:
                return True
        return False

    def _preempt(self, req: int, cohort: DecodeCohort | None) -> None:
        t = self.table
        prompt = t.num_prompt_tokens[req]
        if cohort is not None:
            computed = cohort.remove(req)
            num_generated = computed - prompt + 1
            t.last_emit_s[req] = cohort.last_emit_s
        else:
            computed = t.num_computed_tokens[req]
            num_generated = t.num_target_tokens[req] - prompt
            self.prefilling.remove(req)
        self.pool.free_tokens(computed, t.num_shared_blocks[req])
        t.num_shared_blocks[req] = 0
        t.num_computed_tokens[req] = 0
        t.num_target_tokens[req] = prompt + num_generated
        t.num_preemptions[req] += 1
        self.num_preemptions += 1
        self.num_running -= 1
        self.waiting.appendleft(req)

    # ---- completion --------------------------------------------------------------------------------------
    def _finish(self, req: int, end_s: float, finished: list[int]) -> None:
        self.table.finish_s[req] = end_s
        self.pool.free_tokens(self.table.finish_kv_tokens[req], self.table.num_shared_blocks[req])
        self.num_running -= 1
        finished.append(req)

    def complete(self, out: SchedulerOutput, end_s: float) -> list[int]:
        """Apply a step whose tokens were sampled at `end_s`; return the requests that finished."""
        t = self.table
        finished: list[int] = []
        merged: DecodeCohort | None = None
        for c in out.cohorts:
            if c.base:
                self.itl.add(end_s - c.last_emit_s, len(c.base))
            for req in c.advance(1):
                self._finish(req, end_s, finished)
            if merged is None or len(c.base) > len(merged.base):
                merged, c = c, merged
            if c is not None:
                merged.absorb(c)
        if merged is None:
            merged = self._new_cohort(end_s)
        merged.last_emit_s = end_s
        for req, new in zip(out.prefill_ids, out.prefill_new_tokens):
            self.in_flight.discard(req)
            computed = t.num_computed_tokens[req] + new
            t.num_computed_tokens[req] = computed
            if self.config.enable_prefix_caching:
                self._maybe_cache_prefix(req, computed)
            if computed < t.num_target_tokens[req]:
                continue
            self.prefilling.remove(req)
            if t.first_token_s[req] != t.first_token_s[req]:  # NaN: the first token
                t.first_token_s[req] = end_s
            else:                                             # first token after a recompute
                self.itl.add(end_s - t.last_emit_s[req], 1)
            if computed == t.finish_kv_tokens[req]:
                self._finish(req, end_s, finished)
            else:
                merged.add(req, computed)
        self.ready.append(merged)
        return finished

    # ---- several identical decode steps at once ----------------------------------------------------------
    def _decoding_cohort(self) -> DecodeCohort | None:
        """The cohort whose next steps are pure decodes, if the next step can only be that (pp = 1): nothing
        prefilling, nobody admissible from the waiting queue (empty, or the running set full)."""
        if self._may_prefill():
            return None
        if len(self.ready) != 1 or not self.ready[0]:
            return None
        return self.ready[0]

    def plan_decode_run(self, max_steps: int, *, through_finishes: bool = False) -> DecodeRun | None:
        """The next steps, if they are pure decodes: one more KV token per sequence each step, at most
        `max_steps`, while the blocks they open fit in the free ones. They stop at the first finish, or with
        `through_finishes` (and an empty waiting queue, so that a finish lets nobody in) at the last one, the
        batch shrinking as sequences finish. None if the next step is not a pure decode."""
        cohort = self._decoding_cohort()
        if cohort is None:
            return None
        n, counter, bs = len(cohort.base), cohort.counter, self.config.block_size
        first = cohort.next_finish_counter() - counter
        k = min(first, max_steps)
        finishers = None
        if through_finishes and not self.waiting and first < max_steps:
            finishers = cohort.finishing_within(max_steps)
            # up to the last finish, if every member finishes within max_steps
            k = max_steps if len(finishers) < n else max(finishers.values())
        free = self._run_free_blocks()
        if n * -(-k // bs) > free:  # each member opens at most ceil(k / block_size) blocks in k steps
            k = min(first, max_steps)
            finishers = None
            cum_blocks = np.cumsum(cohort.new_blocks_per_step(k))
            k = min(k, int(np.searchsorted(cum_blocks, free, side="right")))
            if k == 0:
                return None
        if k <= DecodeRun.SHORT_RUN:
            return DecodeRun(k, *short_run_steps(cohort, k, first, finishers))
        return DecodeRun(k, *run_steps(cohort, k, first, finishers))

    def commit_decode_run(self, end_s: np.ndarray, *, per_step_kv: bool = False) -> tuple[list[int], int, int,
                                                                                           np.ndarray | None]:
        """Apply the first `len(end_s)` steps of the planned run (`end_s`: when each one's tokens were sampled),
        segment by segment between finishes. Returns the finished requests, the KV blocks in use summed over
        the steps and at most, and (if asked) per step."""
        (cohort,) = self.ready
        pool = self.pool
        num_steps = len(end_s)
        finished: list[int] = []
        kv_sum = kv_max = 0
        per_step: list[np.ndarray] = []
        pos = 0
        while pos < num_steps:
            seg = min(cohort.next_finish_counter() - cohort.counter, num_steps - pos)
            used = pool.num_used_blocks
            blocks, weighted = cohort.blocks_over(0, seg)
            kv_sum += seg * used + weighted
            kv_max = max(kv_max, used + blocks)
            if per_step_kv:
                per_step.append(used + np.cumsum(cohort.new_blocks_per_step(seg)))
            assert pool.allocate_blocks(blocks), "a planned decode run ran out of KV blocks"
            seg_end = end_s[pos:pos + seg]
            self.itl.add_run(cohort.last_emit_s, seg_end, len(cohort.base))
            last_s = float(seg_end[-1])
            for req in cohort.advance(seg):
                self._finish(req, last_s, finished)
            cohort.last_emit_s = last_s
            pos += seg
        return finished, kv_sum, kv_max, (np.concatenate(per_step) if per_step_kv else None)
