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

from simulator.cohort import DecodeCohort
from simulator.running_set import RunningSet
from simulator.scheduler_output import SchedulerOutput


class V1Scheduler(RunningSet):
    """vLLM V1's step rule over the shared bookkeeping (see the module docstring)."""

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

    def _prefill_victim(self, exclude: list[int]) -> int:
        t = self.table
        candidates = [i for i in self.prefilling if i not in self.in_flight and i not in exclude]
        return max(candidates, key=t.admission_order.__getitem__)

    # ---- several identical decode steps at once ----------------------------------------------------------
    def _may_prefill(self) -> bool:
        """Whether the next step may compute a prompt chunk: one is under way, or a waiting request could be
        admitted (the running set is not full)."""
        return bool(self.prefilling) or (bool(self.waiting) and self.num_running < self.config.max_num_seqs)

    def _run_free_blocks(self) -> int:
        """KV blocks a planned decode run may open without any step of it preempting: all the free ones."""
        return self.pool.num_free_blocks


ContinuousScheduler = V1Scheduler
"""The V1 scheduler under its former name."""
