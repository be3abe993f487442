"""vLLM V0-like continuous batching (vLLM <= 0.7, chunked prefill off): prefill steps stall the decodes.

Modelled (vLLM 0.7.0 `vllm/core/scheduler.py` `Scheduler._schedule_default`, FCFS, no swapping):
- A step is EITHER a prefill batch OR a decode batch, never both. Waiting requests are tried first
  (`Scheduler._schedule_prefills`, `enable_chunking=False`): in arrival order, each whole prompt while
  (a) the token budget `max_num_batched_tokens` holds it, (b) running + admitted sequences stay within
  `max_num_seqs` (the budget is pre-charged with every running sequence), and (c) the KV cache can hold the
  prompt and still keep the watermark free (`BlockSpaceManager.can_allocate`, vLLM 0.7.0
  `vllm/core/block_manager.py`: OK when free - needed >= watermark_blocks = int(0.01 x num_gpu_blocks),
  LATER otherwise). The first request that does not fit ends the pass (`break`: strict FCFS, unlike V1 with
  chunked prefill off, which skips it and lets later ones go). If any prompt was admitted the step is that
  prefill batch and the running sequences do not decode ("Don't schedule decodes if prefills are
  scheduled").
- Otherwise every running sequence decodes one token (`Scheduler._schedule_running`), walked in admission
  order. A sequence may go on only while at least one KV block is free (`BlockSpaceManager.can_append_slots`
  counts one "touched" block per appended token, a worst-case that ignores room in the last block); when none
  is, the most recently admitted sequence not yet walked (the tail of `running`, `running_queue.pop()`) is
  preempted by recompute (`Scheduler._preempt`: RECOMPUTE for single-sequence groups;
  `_preempt_by_recompute` frees its blocks and resets it), or the sequence itself when it is the last one.
  Preempted sequences go back to the front of the waiting queue (`self.waiting.extendleft(preempted)`, so the
  earliest admitted first) and are re-prefilled whole (prompt + generated tokens), sampling their next token.
- Prompts longer than the budget are rejected by vLLM (`_get_prompt_limit`: min(max_model_len,
  max_num_batched_tokens); with chunked prefill off `SchedulerConfig._verify_args` forces the budget >=
  max_model_len): here a ValueError before the run, or a RuntimeError for a recomputed sequence.
- Pipeline parallelism (`VirtualEngines`): vLLM 0.7.0 `vllm/engine/llm_engine.py` `LLMEngine.__init__` makes
  one Scheduler per pipeline stage ("virtual engine"), each with num_gpu_blocks // pp KV blocks
  (`Scheduler.__init__`) and the full `max_num_seqs`; `LLMEngine._add_processed_request` gives a new request
  to the scheduler with the fewest unfinished requests (waiting + running), the lowest index on ties, at the
  moment it is handed over: `AsyncLLMEngine.engine_step` hands over the arrivals when a virtual engine's step
  begins, or `run_engine_loop` when every virtual engine is idle (`VirtualEngines.admit_arrivals`).
  `AsyncLLMEngine.run_engine_loop` keeps one step per virtual engine in flight, so each virtual engine runs
  its own batches one at a time through the shared stages (see `simulator.engine.Replica`). Simplified: every
  stage takes the StepCost's stage time for a batch, each stage serves batches in the order they reach it
  (vLLM 0.7.0 `RayDistributedExecutor._driver_execute_model_async` locks a stage per virtual engine). That
  call hands the request to every stage's driver at once, so a stage prepares its inputs while earlier
  stages compute; the lock of a stage is held for its whole remote call, so the last stage takes the next
  batch only once the previous result is back in the engine process (`simulator.pipelining._virtual_engine`).

Async output processing (one stage): tokens reach the client during the next step, after its CPU part, and,
with nothing else to run, one more step runs for the finished sequences (`EngineConfig.async_output_processing`, `simulator.engine.Replica._lag`).
A finished sequence's slot and KV blocks are freed when its last token is sampled, not a step later, and when
other work is running the extra decode of a finished sequence is not added to that step.

Simplifications: swapping (only for beam search / `preemption_mode="swap"`), the scheduler delay factor (0 by
default), multi-step scheduling, LoRA and prefix caching are not modelled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from simulator.cohort import DecodeCohort
from simulator.config import EngineConfig
from simulator.itl import ItlRecorder
from simulator.kv_blocks import num_blocks_for_tokens
from simulator.request import RequestTable
from simulator.running_set import RunningSet
from simulator.scheduler_output import SchedulerOutput

WATERMARK = 0.01
"""Fraction of a scheduler's KV blocks kept free at admission: the default `watermark` of vLLM 0.7.0
`vllm/core/block_manager.py` `SelfAttnBlockSpaceManager.__init__` (the Scheduler does not pass one)."""


def check_v0_fits(longest_kv_tokens: int, block_size: int, num_kv_blocks: int) -> None:
    """Every request must be able to run alone in a V0 scheduler of `num_kv_blocks` blocks: its longest KV length
    plus the watermark (at least one block, which a lone decode needs free). Otherwise vLLM ignores the request
    (FINISHED_IGNORED) or a lone sequence preempts itself forever. (Prompts longer than the budget are rejected
    by `simulator.run`, as for V1 with chunked prefill off.)"""
    need = num_blocks_for_tokens(longest_kv_tokens, block_size) + max(int(WATERMARK * num_kv_blocks), 1)
    if need > num_kv_blocks:
        raise ValueError(f"a request needs {need} KV blocks ({longest_kv_tokens} tokens + watermark) but a V0 "
                         f"scheduler holds {num_kv_blocks} (num_kv_blocks // pipeline stages); shorten the "
                         "requests or give more KV blocks")


class V0Scheduler(RunningSet):
    """One V0 scheduler (one virtual engine): waiting queue, running sequences, its own KV block pool.

    A sibling of `simulator.scheduler.V1Scheduler` over the same bookkeeping (`simulator.running_set`:
    completion, recompute preemption, planned decode runs); only the step rule differs (module docstring)."""

    def __init__(self, config: EngineConfig, table: RequestTable, itl: ItlRecorder) -> None:
        super().__init__(config, table, itl)
        self.watermark_blocks = int(WATERMARK * config.num_kv_blocks)
        if len(table):
            check_v0_fits(max(table.finish_kv_tokens), config.block_size, config.num_kv_blocks)

    # ---- one step ----------------------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        ids: list[int] = []
        news: list[int] = []
        self._admit_prefills(ids, news)
        if ids:  # a prefill step: the running sequences wait (their cohorts stay ready; drop empty ones)
            self.ready = [c for c in self.ready if c.base]
            return self._make_output([], 0, 0, ids, news, [])
        cohorts = [c for c in self.ready if c.base]
        self.ready = []
        preempted: list[int] = []
        need = 0
        for c in cohorts:
            need += c.num_new_blocks()
        # Every sequence must find a free block when its turn comes: if one stays free after all of them
        # have theirs, nobody is preempted; otherwise walk them one by one.
        if need < self.pool.num_free_blocks:
            self.pool.allocate_blocks(need)
        else:
            self._allocate_decodes_preempting(cohorts, preempted)
        num_decode = decode_context = 0
        for c in cohorts:
            num_decode += len(c.base)
            decode_context += c.sum_computed_tokens
        decode_context += num_decode
        return self._make_output(cohorts, num_decode, decode_context, [], [], preempted)

    def _head_admission(self) -> str:
        """What `_schedule_prefills` does with the head of the waiting queue given the KV pool: "ok", "later"
        (wait for blocks) or "never" (cannot fit even in an empty pool, or longer than the budget)."""
        t, pool = self.table, self.pool
        num_tokens = t.num_target_tokens[self.waiting[0]]  # a waiting request has no KV: computed = 0
        blocks = num_blocks_for_tokens(num_tokens, pool.block_size)
        if num_tokens > self.config.max_num_batched_tokens or pool.num_blocks - blocks < self.watermark_blocks:
            return "never"
        return "ok" if pool.num_free_blocks - blocks >= self.watermark_blocks else "later"

    def _admit_prefills(self, ids: list[int], news: list[int]) -> None:
        """Whole prompts from the head of the waiting queue until one does not fit (module docstring)."""
        cfg, t, pool, waiting = self.config, self.table, self.pool, self.waiting
        token_budget = cfg.max_num_batched_tokens
        while waiting:
            status = self._head_admission()
            req = waiting[0]
            num_tokens = t.num_target_tokens[req]
            if status == "never":
                raise RuntimeError(f"request {t.ids[req]} needs {num_tokens} tokens recomputed after a "
                                   "preemption, more than max_num_batched_tokens or the KV cache holds; vLLM 0.7 "
                                   "would drop it (FINISHED_IGNORED); raise the budget or the KV blocks")
            if status == "later" or num_tokens > token_budget or self.num_running >= cfg.max_num_seqs:
                break
            waiting.popleft()
            assert pool.allocate_slots(0, num_tokens) is not None
            self._admit(req, num_tokens, ids, news)
            token_budget -= num_tokens
        assert token_budget >= 0, "token budget overspent"

    def _allocate_decodes_preempting(self, cohorts: list[DecodeCohort], preempted: list[int]) -> bool:
        """Walk the decoding sequences in admission order; each needs one free block to go on (and takes it
        only if its token opens a block). With none free, preempt the most recently admitted sequence not yet
        walked, possibly the current one, which ends the walk (returns True)."""
        t, pool, bs = self.table, self.pool, self.config.block_size
        order = sorted([(t.admission_order[i], i, c) for c in cohorts for i in c.base], key=lambda e: e[0])
        pos = 0
        while pos < len(order):
            _, i, cohort = order[pos]
            if self._preempt_for_a_block(order, i, preempted):
                return True
            if (cohort.base[i] + cohort.counter) % bs == 0:
                pool.allocate_blocks(1)
            pos += 1
        return False

    # ---- planned decode runs -----------------------------------------------------------------------------
    def _may_prefill(self) -> bool:
        """Whether the next step would admit a waiting request (then it is not a decode step). While the head
        waits for blocks, a decode run only takes blocks, so it keeps waiting until a finish."""
        if self.prefilling:
            return True
        if not self.waiting or self.num_running >= self.config.max_num_seqs:
            return False
        return self._head_admission() != "later"

    def _run_free_blocks(self) -> int:
        """A planned run must leave a block free after each step (then no sequence of it is preempted)."""
        return self.pool.num_free_blocks - 1


class VirtualEngines:
    """V0's schedulers of one replica with pipeline parallelism: one per stage, each with num_kv_blocks // pp
    blocks (vLLM 0.7.0 `Scheduler.__init__`), a request going to the one with the fewest unfinished requests
    (`LLMEngine._add_processed_request`). They share nothing but the stages that run their batches."""

    def __init__(self, config: EngineConfig, table: RequestTable, itl: ItlRecorder, num_stages: int,
                 make: Callable[[EngineConfig, RequestTable, ItlRecorder], "V0Scheduler"] | None = None) -> None:
        make = make or V0Scheduler
        per_engine = config.num_kv_blocks // num_stages
        if per_engine < 1:
            raise ValueError(f"num_kv_blocks ({config.num_kv_blocks}) is fewer than the {num_stages} pipeline "
                             "stages, each of which V0 gives num_kv_blocks // pp blocks")
        engine_config = replace(config, num_kv_blocks=per_engine)
        self.schedulers = [make(engine_config, table, itl) for _ in range(num_stages)]
        # vLLM 0.7.0 AsyncLLMEngine: arrivals wait in its RequestTracker until a virtual engine's step begins
        # (`engine_step` first hands every new request to `add_request_async`), or, with every virtual engine idle,
        # until `run_engine_loop` wakes on the first of them; `busy[v]`: engine v has a step under way
        self.arrivals: list[int] = []
        self.busy = [False] * num_stages

    def add_request(self, req: int) -> int:
        """Give `req` to the least loaded scheduler; return its index."""
        loads = [self.num_unfinished(v) for v in range(len(self.schedulers))]
        index = loads.index(min(loads))
        self.schedulers[index].add_request(req)
        return index

    def num_unfinished(self, v: int) -> int:
        """Engine v's requests waiting or running (vLLM's `get_num_unfinished_seq_groups`)."""
        s = self.schedulers[v]
        return s.num_waiting + s.num_running

    def has_unfinished(self, v: int) -> bool:
        return self.num_unfinished(v) > 0

    def admit_arrivals(self) -> list[int]:
        """Hand the tracker's arrivals, in order, each to the least loaded scheduler at that moment; return the idle
        engines that now have requests (vLLM 0.7.0 `run_engine_loop` starts a step for an idle virtual engine as
        soon as `has_unfinished_requests_for_virtual_engine` is true)."""
        if not self.arrivals:  # (every step start asks) an idle engine holds no request: none to wake
            return []
        for req in self.arrivals:
            self.add_request(req)
        self.arrivals.clear()
        woken = [v for v in range(len(self.schedulers)) if not self.busy[v] and self.has_unfinished(v)]
        for v in woken:
            self.busy[v] = True
        return woken

    @property
    def num_waiting(self) -> int:
        return sum(s.num_waiting for s in self.schedulers)

    @property
    def num_running(self) -> int:
        return sum(s.num_running for s in self.schedulers)

    @property
    def num_used_blocks(self) -> int:
        return sum(s.pool.num_used_blocks for s in self.schedulers)

    @property
    def num_preemptions(self) -> int:
        return sum(s.num_preemptions for s in self.schedulers)
