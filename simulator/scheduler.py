"""vLLM V1-like continuous batching: which tokens of which requests one engine step computes.

Modelled (the semantics of vLLM's `v1/core/sched/scheduler.py` with the FCFS policy):
- One step spends two budgets: `max_num_batched_tokens` tokens and `max_num_seqs` running sequences.
- Running requests first: a decoding sequence computes 1 token; a request whose prompt is not done computes
  the rest of it, capped by `long_prefill_token_threshold` and by the tokens left in the budget (chunked
  prefill). Then waiting requests in arrival order (FCFS), each taking what is left of the budget; with chunked
  prefill off, a prompt that does not fit whole is skipped this step and later ones may go.
- KV slots are allocated per step for `computed + new` tokens (whole blocks). When a running request cannot get
  its blocks, the most recently admitted running request (the tail of vLLM's `running` list, which under FCFS
  is the most recently arrived one) is preempted by recompute: its blocks are freed, its computed tokens
  dropped, and it goes to the front of the waiting queue; on re-admission it prefills prompt + the output it
  had generated and then samples its next token. A request that must preempt itself stops the running pass.
  No waiting request is admitted in a step that preempted.
- A prompt whose last chunk is computed samples its first token in that step (vLLM's TTFT).
- With pipeline parallelism, requests in a batch still in flight are not scheduled again until it returns;
  `max_num_seqs` bounds every admitted request, in flight or not (vLLM's `running` list), so filling P
  micro-batches of B sequences takes max_num_seqs >= P x B.

Deliberate simplifications:
- Decoding sequences are scheduled before the prompt chunks of running requests. vLLM walks its running list in
  admission order; the two agree unless `long_prefill_token_threshold` lets an older prompt still be prefilling
  while a younger request decodes *and* the budget runs out. Decodes never exceed the budget because
  `max_num_seqs <= max_num_batched_tokens`.
- A prompt chunk that cannot get blocks preempts only requests that are still prefilling (or itself).

Prefix caching (`enable_prefix_caching`; in the spirit of vLLM V1's `KVCacheManager.get_computed_blocks`): the
requests with `num_shared_prefix_tokens` K > 0 share one prefix. Once a request's computed tokens reach
C = floor(K / block_size) * block_size (its prefix's full blocks), the prefix is cached; a request admitted
from the waiting queue later starts with C tokens computed: they cost no prefill compute (the chunk still
attends to them, so they count in `prefill_context_tokens` and the attention pairs) and their C / block_size
blocks are shared, so it allocates and frees only its own. Requests admitted before the prefix is cached pay
in full (as in vLLM: the same step's requests all miss). Simplifications: only full prefix blocks are hits,
and only once the whole prefix is computed (vLLM also hits blocks cached mid-prefill); the prefix's blocks
stay resident for the rest of the run (the first request's, counted as used, never evicted: vLLM keeps them
as evictable free blocks, and evicts them by LRU only under memory pressure); one prefix per simulation. V0
and static batching refuse prefix caching (`EngineConfig`).

Not modelled: speculative decoding (and its lookahead slots), async scheduling, structured
output, LoRA, encoder inputs, KV transfer/offload, priorities, stop strings and EOS (outputs always have their
requested length, as with `ignore_eos`), the null block vLLM reserves, max_model_len checks.
"""

from __future__ import annotations

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


class ContinuousScheduler(WaitingQueue):
    """The scheduler of one replica: waiting queue, running set, KV block pool (see the module docstring)."""

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
        if any(c.base for c in self.ready):
            return True
        return any(i not in self.in_flight for i in self.prefilling)

    def _new_cohort(self, last_emit_s: float) -> DecodeCohort:
        return DecodeCohort(self.config.block_size, self.table.finish_kv_tokens, last_emit_s)

    # ---- one step ----------------------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        cfg, t, pool = self.config, self.table, self.pool
        token_budget = cfg.max_num_batched_tokens
        preempted: list[int] = []
        stopped = False

        # 1. decoding requests: one token each.
        cohorts = [c for c in self.ready if c.base]
        self.ready = []
        need = 0
        for c in cohorts:
            need += c.num_new_blocks()
        if not pool.allocate_blocks(need):
            stopped = self._allocate_decodes_preempting(cohorts, preempted)
        num_decode = 0
        decode_context = 0
        for c in cohorts:
            num_decode += len(c.base)
            decode_context += c.sum_computed_tokens
        decode_context += num_decode
        token_budget -= num_decode

        # 2. running requests whose prompt is not done, then 3. waiting ones (FCFS).
        ids: list[int] = []
        news: list[int] = []
        threshold = cfg.long_prefill_token_threshold
        if not stopped:
            for i in list(self.prefilling):
                if token_budget <= 0:
                    break
                if i in self.in_flight or i in preempted:
                    continue
                computed = t.num_computed_tokens[i]
                new = t.num_target_tokens[i] - computed
                if 0 < threshold < new:
                    new = threshold
                new = min(new, token_budget)
                while pool.allocate_slots(computed, new) is None:
                    victim = self._prefill_victim(exclude=ids)
                    self._preempt(victim, None)
                    preempted.append(victim)
                    if victim == i:
                        stopped = True
                        break
                if stopped:
                    break
                ids.append(i)
                news.append(new)
                token_budget -= new
        if not preempted:
            token_budget = self._admit_waiting(token_budget, ids, news)
        assert token_budget >= 0, "token budget overspent"
        return self._make_output(cohorts, num_decode, decode_context, ids, news, preempted)

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

    def _admit_waiting(self, token_budget: int, ids: list[int], news: list[int]) -> int:
        cfg, t, pool = self.config, self.table, self.pool
        threshold = cfg.long_prefill_token_threshold
        skipped: list[int] = []
        waiting = self.waiting
        while waiting and token_budget > 0 and self.num_running < cfg.max_num_seqs:
            i = waiting[0]
            computed = t.num_computed_tokens[i] or self._cache_hit_tokens(i)
            new = t.num_target_tokens[i] - computed
            if 0 < threshold < new:
                new = threshold
            if not cfg.enable_chunked_prefill and new > token_budget:
                skipped.append(waiting.popleft())
                continue
            new = min(new, token_budget)
            if pool.allocate_slots(computed, new) is None:
                break
            waiting.popleft()
            t.num_computed_tokens[i] = computed
            t.num_shared_blocks[i] = self._cache_hit_tokens(i) // cfg.block_size
            self._admit(i, new, ids, news)
            token_budget -= new
        if skipped:
            waiting.extendleft(reversed(skipped))
        return token_budget

    # ---- prefix caching ----------------------------------------------------------------------------------
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
    def _allocate_decodes_preempting(self, cohorts: list[DecodeCohort], preempted: list[int]) -> bool:
        """Give each decoding request its block in admission order; when the pool is empty, preempt the most
        recently admitted request not yet served (possibly the current one). Return True if the current
        request preempted itself (the running pass stops there)."""
        t, pool, bs = self.table, self.pool, self.config.block_size
        order = sorted([(t.admission_order[i], i, c) for c in cohorts for i in c.base]
                       + [(t.admission_order[i], i, None) for i in self.prefilling if i not in self.in_flight],
                       key=lambda e: e[0])
        pos = 0
        while pos < len(order):
            _, i, cohort = order[pos]
            if cohort is not None and (cohort.base[i] + cohort.counter) % bs == 0:
                if self._preempt_for_a_block(order, i, preempted):
                    return True
                pool.allocate_blocks(1)
            pos += 1
        return False

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

    def _prefill_victim(self, exclude: list[int]) -> int:
        t = self.table
        candidates = [i for i in self.prefilling if i not in self.in_flight and i not in exclude]
        return max(candidates, key=t.admission_order.__getitem__)

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
    def _may_prefill(self) -> bool:
        """Whether the next step may compute a prompt chunk: one is under way, or a waiting request could be
        admitted (the running set is not full)."""
        return bool(self.prefilling) or (bool(self.waiting) and self.num_running < self.config.max_num_seqs)

    def _run_free_blocks(self) -> int:
        """KV blocks a planned decode run may open without any step of it preempting: all the free ones."""
        return self.pool.num_free_blocks

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
