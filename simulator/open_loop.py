"""The open-loop driver: every replica stepped without SimPy when every arrival is known in advance.

With no `max_concurrency`, a round-robin or random router and one pipeline stage, a request's replica and the
moment it reaches it do not depend on the simulation, so the replicas never interact: each is a plain loop
{ schedule -> cost -> apply } that runs until its next request arrives, and the requests are handed to it in
sending order, pulled chunk by chunk from a `RequestStream`. A request lives in the `RequestTable` only from
its arrival to its finish (its slot is then reused), and its metrics go to fixed-size accumulators
(`simulator.accumulators`), so memory does not grow with the number of requests.

The steps are those of the "serial" pipelining strategy (`simulator.pipelining`), with the same arithmetic in
the same order, so the results are the same (tested): a request is in the queue at a step scheduled at
`clock` when it arrived at or before `clock`; a run of pure decodes (nothing prefilling, nobody admissible)
stops after the step that ends at or after the next arrival. Long runs (more than `LONG_RUN_STEPS` steps
expected before the next arrival) are costed with one array call; short ones one step at a time inline, each
step's seconds looked up in a cache of the StepCost's answers (`MemoStepCost`).

Served runs too (docs/online-model.md): with async scheduling an arrival waits, as in `Replica._admit_pending`,
until the step scheduled after the latest step's start (it then lasts one more step, which runs alone); a
request's first and last token are delayed by `token_delivery_s` per token of their step (`Replica._delivered`).
"""

from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from heapq import heappop, heappush
from typing import Callable

import numpy as np

from simulator.batch import BatchStats, StepCost
from simulator.config import EngineConfig
from simulator.engine import _SAME_INSTANT_S, Replica
from simulator.itl import ItlRecorder
from simulator.request import RequestTable
from simulator.running_set import RunningSet
from simulator.schedulers import make_scheduler
from simulator.timeline import StepRecorder

MEMO_ENTRIES = 1 << 17
"""Most answers `MemoStepCost` keeps of each kind (then it starts afresh): ~40 MB at most."""


LONG_RUN_STEPS = 256
"""Decode runs expected to be longer (before the next arrival) are costed with one array call: numpy's call
overhead (~50 us) pays off only over a few hundred steps of the inline loop (~0.5 us each)."""


class MemoStepCost:
    """A StepCost whose answers for scalar steps are cached (the StepCost must be a pure function of the batch,
    as its protocol says). A run at a steady rate repeats the same few thousand (sequences, KV tokens) decode
    steps millions of times."""

    def __init__(self, cost: StepCost, max_entries: int = MEMO_ENTRIES) -> None:
        self.cost = cost
        self.num_stages = cost.num_stages
        self.max_entries = max_entries
        self.decode: dict[int, float] = {}
        self.mixed: dict[tuple, float] = {}

    def __call__(self, batch: BatchStats):
        if type(batch.num_seqs) is not int:
            return self.cost(batch)
        key = (batch.num_prefill_tokens, batch.num_decode_tokens, batch.prefill_attention_pairs,
               batch.prefill_context_tokens, batch.decode_context_tokens, batch.num_sampled_tokens, batch.num_seqs)
        s = self.mixed.get(key)
        if s is None:
            if len(self.mixed) >= self.max_entries:
                self.mixed.clear()
            s = self.mixed[key] = float(self.cost(batch))
        return s

    def decode_step(self, num_seqs: int, decode_context_tokens: int) -> float:
        """Seconds of a pure-decode step of `num_seqs` sequences reading `decode_context_tokens` KV tokens."""
        key = (num_seqs << 40) | decode_context_tokens
        s = self.decode.get(key)
        if s is None:
            if len(self.decode) >= self.max_entries:
                self.decode.clear()
            s = float(self.cost(BatchStats(0, num_seqs, 0.0, 0, decode_context_tokens, num_seqs, num_seqs)))
            if decode_context_tokens < 1 << 40:
                self.decode[key] = s
        return s


class DirectReplica:
    """One replica's scheduler and clock, stepped by `advance` (module docstring)."""

    def __init__(self, index: int, config: EngineConfig, cost: MemoStepCost, table: RequestTable,
                 itl: ItlRecorder, recorder: StepRecorder, on_finish: Callable[[int], None], *,
                 max_macro_steps: int, token_delivery_s: float = 0.0) -> None:
        scheduler, strategy = make_scheduler(config, table, itl, 1)
        if strategy != "serial" or not isinstance(scheduler, RunningSet):
            raise ValueError(f"the open-loop driver runs the 'serial' strategy, not {strategy!r}")
        self.index = index
        self.config = config
        self.stops_loops = config.stops_worker_loops  # V0's worker loops (EngineConfig.idle_stop_s), as the SimPy
        self.loops_running = False  # Replica's
        self._num_arrived = self._arrived_by_step_start = 0
        self.scheduler = scheduler
        self.cost = cost
        self.recorder = recorder
        self.itl = itl
        self.on_finish = on_finish
        self.max_macro_steps = max_macro_steps
        self.clock = 0.0
        self.last_stage_s = 0.0
        self.table = table
        self.token_delivery_s = token_delivery_s  # `_delivered`, as the SimPy Replica's
        # Async scheduling: arrivals wait here, (arrival time, slot), as in `Replica._admit_pending`;
        # last_start_s is when the latest step began
        self._pending: list[tuple[float, int]] | None = [] if config.async_scheduling else None
        self.last_start_s = float("-inf")
        # An arrival at `until_s` is seen by the step scheduled at `clock` only if until_s <= clock and, with async
        # scheduling, the latest step began no earlier than until_s less this (inf: off; see `_sees`)
        self._lag_s = _SAME_INSTANT_S if config.async_scheduling else math.inf
        # V0's async output processing (`Replica._lag`): this step's first and last tokens, delivered by the next
        self.output_lag = config.async_output_processing
        self._lagged_first: list[int] = []
        self._lagged_finished: list[int] = []
        self._cpu_time_s = getattr(cost.cost, "cpu_time_s", None)
        # V0 keeps one block free after every decode step (`_run_free_blocks`), V1 none
        self._block_margin = scheduler.pool.num_free_blocks - scheduler._run_free_blocks()
        # the common V1 step inlined (`_mixed_step`): not with the options that make admission differ, nor with
        # async output processing (V0 with chunked prefill runs the V1 model: `schedule` + `complete` and `_lag`)
        self._fast_mixed = (config.scheduler == "v1" and not config.enable_prefix_caching
                            and not config.long_prefill_token_threshold and not config.async_output_processing
                            and not self.stops_loops)  # (V0's worker loops: `schedule` adds the restart)
        # what `_short_run` reads on every call and never changes (the lists and dicts are only ever updated in
        # place), unpacked there in one go
        pool = scheduler.pool
        self._run_constants = (scheduler, pool, recorder, pool.block_size, self._block_margin,
                               pool.num_blocks - self._block_margin, itl.gap_s.append, itl.count.append,
                               cost.decode.get, cost.decode_step, table.finish_kv_tokens, table.finish_s,
                               table.num_shared_blocks, on_finish, token_delivery_s, self._lag_s)

    def submit(self, slot: int, at_s: float) -> None:
        """A request reaches the replica at `at_s`; an idle replica wakes then."""
        sched = self.scheduler
        self._num_arrived += 1
        if at_s > self.clock and not sched.has_schedulable_work():
            self.clock = at_s
        if self._pending is not None:
            self._pending.append((at_s, slot))
        else:
            sched.waiting.append(slot)  # WaitingQueue.add_request

    _delivered = Replica._delivered
    _lag = Replica._lag
    _lag_run = Replica._lag_run
    _deliver_lagged = Replica._deliver_lagged
    _keep_lagged = Replica._keep_lagged
    _delivery_s = Replica._delivery_s
    _extra_step_outputs = Replica._extra_step_outputs
    has_lagged_outputs = Replica.has_lagged_outputs

    _restart_s = Replica._restart_s
    _step_left_nothing = Replica._step_left_nothing

    def _extra_step(self) -> None:
        """`simulator.pipelining._extra_step`: nothing left to schedule but outputs to deliver."""
        end, _, handed = self._extra_step_outputs(self.clock, self.cost)
        for req in handed:
            self.on_finish(req)
        self.clock = end

    def _admit_pending(self) -> None:
        """`Replica._admit_pending` at the step scheduled at `clock` (every arrival by then submitted): the
        arrivals by the latest step's start join, or all when nothing else is schedulable."""
        sched, pending = self.scheduler, self._pending
        cutoff = self.last_start_s + _SAME_INSTANT_S if sched.has_schedulable_work() else math.inf
        keep = []
        for arrived_s, slot in pending:
            if arrived_s <= cutoff:
                sched.waiting.append(slot)
            else:
                keep.append((arrived_s, slot))
        self._pending = keep

    def _sees(self, until_s: float) -> bool:
        """Whether the step scheduled now would see an arrival at `until_s` (`_admit_pending`'s rule): it has
        arrived, and (async scheduling) it arrived by the latest step's start or nothing else is schedulable."""
        if self.clock < until_s:
            return False
        return not (self.last_start_s + self._lag_s < until_s and self.scheduler.has_schedulable_work())

    def advance(self, until_s: float) -> None:
        """Run every step scheduled before the next arrival, at `until_s`, is seen (`_sees`; inf: until the work is
        done)."""
        sched, rec = self.scheduler, self.recorder
        fast_mixed = self._fast_mixed
        while self.clock < until_s or not self._sees(until_s):  # (the first test is _sees's, inlined)
            if self.stops_loops:
                if self.loops_running and self._step_left_nothing():
                    self.loops_running = False  # `simulator.pipelining.serial`'s stop of V0's worker loops
                    self.clock = self.clock + self.config.idle_stop_s
                    continue
                self._arrived_by_step_start = self._num_arrived  # (no request is submitted during `advance`)
            limit = until_s
            pending = self._pending
            if pending:
                if pending[-1][0] <= self.last_start_s + _SAME_INSTANT_S:  # all seen (they came in order):
                    if len(pending) == 1:  # `_admit_pending`'s usual case
                        sched.waiting.append(pending[0][1])
                    else:
                        sched.waiting.extend([slot for _, slot in pending])
                    pending.clear()
                else:
                    self._admit_pending()
                    if self._pending:  # not seen yet (the driver submits only seen ones): one step, then again
                        limit = self.clock
            if sched.waiting:
                if fast_mixed and self._mixed_step():
                    continue
                if self._decode_steps(limit, sched._decoding_cohort()):
                    continue
            elif not sched.prefilling and len(sched.ready) == 1:  # what _decoding_cohort asks, in short
                cohort = sched.ready[0]
                if not cohort.base:  # no work: nothing waiting, prefilling or decoding
                    if self.output_lag and self.has_lagged_outputs:
                        self._extra_step()
                        continue
                    return
                if self._decode_steps(limit, cohort):
                    continue
            if not sched.has_schedulable_work():
                if self.output_lag and self.has_lagged_outputs:
                    self._extra_step()
                    continue
                return
            out = sched.schedule()
            if out.is_empty:
                if out.preempted_ids:  # the state changed: schedule again
                    continue
                raise RuntimeError(f"replica {self.index} cannot schedule any waiting request (a prompt longer "
                                   "than max_num_batched_tokens with chunked prefill off?)")
            stage_s = float(self.cost(out.batch))
            if self.stops_loops:
                stage_s += self._restart_s()
            end = self.clock + stage_s
            rec.add_step(self.index, self.clock, end, stage_s, out.batch, sched.num_running, sched.num_waiting,
                         sched.pool.num_used_blocks)
            finished = sched.complete(out, end)
            if self.output_lag:
                finished = self._lag(end, self._delivery_s(self.clock, end, out.batch), out.prefill_ids, finished,
                                     out.batch.num_sampled_tokens)
            else:
                self._delivered(end, out.batch.num_sampled_tokens, out.prefill_ids, finished)
            self.last_start_s = self.clock
            self.clock = end
            self.last_stage_s = stage_s
            for req in finished:
                self.on_finish(req)

    def _mixed_step(self) -> bool:
        """V1's `schedule` + `complete` inlined for the step that follows an arrival: nothing prefilling, at most
        one decoding cohort whose blocks are free, and waiting requests admitted whole (FCFS, token budget,
        max_num_seqs, KV blocks). False, changing nothing, when the step is not of that kind (a prompt to split
        or skip, a preemption): then `schedule` takes it."""
        sched = self.scheduler
        if sched.prefilling or len(sched.ready) > 1:
            return False
        t, pool, cfg = sched.table, sched.pool, sched.config
        bs = pool.block_size
        cohort = sched.ready[0] if sched.ready else None
        n = len(cohort.base) if cohort is not None else 0
        free = pool.num_free_blocks
        if n:
            need = cohort.residue_counts[-cohort.counter % bs]
            if need > free:
                return False
            free -= need
        budget = cfg.max_num_batched_tokens - n
        running, max_seqs = sched.num_running, cfg.max_num_seqs
        waiting, target = sched.waiting, t.num_target_tokens
        admitted: list[int] = []
        num_prefill = prefill_context = 0
        pairs = 0
        for i in waiting:
            if budget <= 0 or running >= max_seqs:
                break
            new = target[i]  # a waiting request has computed nothing
            if new > budget:
                return False  # a chunk (chunked prefill) or a skip (chunked prefill off): schedule() decides
            blocks = -(-new // bs)
            if blocks > free:
                break
            free -= blocks
            budget -= new
            running += 1
            admitted.append(i)
            num_prefill += new
            pairs += new * (0 + (new + 1) / 2)
            prefill_context += 0 + new
        if not admitted:
            return False
        # commit the schedule
        for _ in admitted:
            waiting.popleft()
        order = sched._next_admission
        for i in admitted:
            t.admission_order[i] = order
            order += 1
        sched._next_admission = order
        sched.num_running = running
        pool.num_free_blocks = free
        decode_context = cohort.sum_base + n * cohort.counter + n if n else 0
        num_seqs = n + len(admitted)
        pairs = float(pairs)
        key = (num_prefill, n, pairs, prefill_context, decode_context, num_seqs, num_seqs)  # MemoStepCost's key
        stage_s = self.cost.mixed.get(key)
        if stage_s is None:
            stage_s = self.cost(BatchStats(num_prefill, n, pairs, prefill_context, decode_context, num_seqs,
                                           num_seqs))
        clock = self.clock
        end = clock + stage_s
        rec = self.recorder
        used = pool.num_blocks - free
        rec.num_steps += 1
        rec.sum_num_seqs += num_seqs
        rec.kv_used_blocks_sum += used
        if used > rec.kv_used_blocks_max:
            rec.kv_used_blocks_max = used
        # complete the step
        finished: list[int] = []
        itl = self.itl
        if n:
            itl.gap_s.append(end - cohort.last_emit_s)
            itl.count.append(n)
            heap = cohort.finish_heap
            if heap[0][0] <= cohort.counter + 1:  # someone's last token (else cohort.advance only counts)
                for req in cohort.advance(1):
                    sched._finish(req, end, finished)
            else:
                cohort.counter += 1
            merged = cohort
        else:
            merged = sched._new_cohort(end)
        merged.last_emit_s = end
        first_token_s, finish_kv = t.first_token_s, t.finish_kv_tokens
        delivery_s = self.token_delivery_s  # `Replica._delivered`, inlined: first and last tokens reach clients
        first_s = end + delivery_s * num_seqs if delivery_s > 0 else end  # this much later
        base, residues, counter, cohort_bs = merged.base, merged.residue_counts, merged.counter, merged.block_size
        for i in admitted:
            computed = target[i]
            t.num_computed_tokens[i] = computed
            if first_token_s[i] != first_token_s[i]:  # NaN: the first token
                first_token_s[i] = first_s
            else:                                     # first token after a recompute
                itl.add(end - t.last_emit_s[i], 1)
            if computed == finish_kv[i]:
                sched._finish(i, end, finished)
            else:  # merged.add(i, computed), inlined
                b = computed - counter
                base[i] = b
                merged.sum_base += b
                residues[b % cohort_bs] += 1
                heappush(merged.finish_heap, (finish_kv[i] - b, i))
        if not n:
            sched.ready = [merged]  # (with n > 0 it already is [cohort])
        if delivery_s > 0:
            finish_s, delay_s = t.finish_s, delivery_s * num_seqs
            for req in finished:
                finish_s[req] += delay_s
        self.last_start_s = clock
        self.clock = end
        self.last_stage_s = stage_s
        for req in finished:
            self.on_finish(req)
        return True

    def _decode_steps(self, until_s: float, cohort) -> bool:
        """Pure-decode steps of `cohort` up to the one the next arrival falls in, if the next step is one (the
        caller found `cohort` as `_decoding_cohort` does; None if not); False when none was run."""
        if cohort is None:
            return False
        max_steps = self.max_macro_steps
        if until_s < math.inf and self.last_stage_s > 0:
            max_steps = min(max_steps, 2 * int((until_s - self.clock) / self.last_stage_s) + 8)
        if max_steps > LONG_RUN_STEPS:
            return self._long_run(until_s, max_steps)
        return self._short_run(cohort, until_s)

    def _long_run(self, until_s: float, max_steps: int) -> bool:
        """Plan the run, cost it with one array call, commit the steps up to the arrival's."""
        sched = self.scheduler
        run = sched.plan_decode_run(max_steps, through_finishes=True)
        if run is None:
            return False
        stage_s = np.asarray(self.cost(run.batch), dtype=np.float64)
        acc = stage_s.copy()
        acc[0] += self.clock
        end_s = np.cumsum(acc)  # ((start + s0) + s1) + ...: the same additions as one step at a time
        m = run.num_steps
        if until_s < end_s[-1]:
            m = int(np.searchsorted(end_s, until_s, side="left")) + 1
            if m < run.num_steps and (float(end_s[m - 2]) if m > 1 else self.clock) + self._lag_s < until_s:
                m += 1  # async scheduling: the step after the arrival's does not see it either (`_sees`)
        end_s = end_s[:m]
        num_waiting = sched.num_waiting
        done, kv_sum, kv_max, _ = sched.commit_decode_run(end_s)
        if self.output_lag:
            done = self._lag_run(self.clock, end_s, done, run.batch)
        elif self.token_delivery_s > 0:  # as the SimPy `_decode_run`: each in the step it finished in
            finish_s = sched.table.finish_s
            for req in done:
                i = int(np.searchsorted(end_s, finish_s[req]))
                self._delivered(float(end_s[i]), float(run.num_seqs[i]), last_ids=(req,))
        self.last_start_s = float(end_s[-2]) if m > 1 else self.clock
        self.recorder.add_steps(self.index, self.clock, end_s, stage_s, None, None, num_waiting,
                                sum_num_seqs=int(np.sum(run.num_seqs[:m])), kv_used_blocks_sum=kv_sum,
                                kv_used_blocks_max=kv_max, kv_used_blocks=lambda: None)
        self.clock = float(end_s[-1])
        self.last_stage_s = float(stage_s[m - 1])
        for req in done:
            self.on_finish(req)
        return True

    def _short_run(self, cohort, until_s: float) -> bool:
        """Step the decodes one at a time (what `schedule` + `complete` do for a pure-decode step, inlined)."""
        (sched, pool, rec, bs, margin, cap, add_gap, add_count, memo_get, decode_step, finish_kv, finish_s,
         shared_blocks, on_finish, delivery_s, lag_s) = self._run_constants
        lag = self.output_lag
        residues = cohort.residue_counts
        clock, last, counter = self.clock, cohort.last_emit_s, cohort.counter
        n = len(cohort.base)
        total = cohort.sum_base + n * counter  # KV tokens of the cohort
        next_finish = cohort.next_finish_counter()
        heap, base = cohort.finish_heap, cohort.base
        # `avail` blocks may be opened (free less V0's margin), `cap - avail` are in use; the sequences summed
        # per segment between finishes (n is constant within one)
        avail = pool.num_free_blocks - margin
        start_counter = seg_start = counter
        sum_seqs = kv_sum = 0
        kv_max = rec.kv_used_blocks_max
        stage_s = self.last_stage_s
        start = self.last_start_s
        while clock < until_s or start + lag_s < until_s:  # `_sees`, where there is work
            need = residues[-counter % bs]
            if need > avail:
                break
            avail -= need
            ctx = total + n
            stage_s = memo_get((n << 40) | ctx)  # contexts stay far below 2**40 tokens
            if stage_s is None:
                stage_s = decode_step(n, ctx)
            end = clock + stage_s
            if lag and (self._lagged_first or self._lagged_finished):  # the previous step's outputs (Replica._lag)
                deliver_s = self._delivery_s(clock, end, BatchStats(0, n, 0.0, 0, ctx, n, n))
                for req in self._deliver_lagged(deliver_s, n):
                    on_finish(req)
            start = clock
            used = cap - avail
            kv_sum += used
            if used > kv_max:
                kv_max = used
            add_gap(end - last)
            add_count(n)
            last = clock = end
            counter += 1
            total += n
            if counter == next_finish:  # cohort.advance + sched._finish, inlined (the same order)
                sum_seqs += n * (counter - seg_start)
                seg_start = counter
                while heap and heap[0][0] <= counter:
                    fc, req = heappop(heap)
                    b = base.get(req)
                    if b is None or b + fc != finish_kv[req]:
                        continue  # a lazily deleted entry
                    del base[req]
                    cohort.sum_base -= b
                    residues[b % bs] -= 1
                    avail += -(-finish_kv[req] // bs) - shared_blocks[req]
                    sched.num_running -= 1
                    pool.num_free_blocks = avail + margin  # for _may_prefill (V0 asks the pool)
                    if lag:  # delivered by the next step
                        finish_s[req] = end
                        self._lagged_finished.append(req)
                    else:
                        finish_s[req] = end + delivery_s * n if delivery_s > 0 else end  # Replica._delivered
                        on_finish(req)
                n = len(base)
                if not n or ((sched.waiting or sched.prefilling) and sched._may_prefill()):
                    break
                total = cohort.sum_base + n * counter
                while heap:  # cohort.next_finish_counter
                    fc, req = heap[0]
                    b = base.get(req)
                    if b is not None and b + fc == finish_kv[req]:
                        break
                    heappop(heap)
                next_finish = heap[0][0] if heap else None
        num_steps = counter - start_counter
        if not num_steps:
            return False
        sum_seqs += n * (counter - seg_start)
        pool.num_free_blocks = avail + margin
        cohort.counter = counter
        cohort.last_emit_s = last
        self.last_start_s = start
        self.clock = clock
        self.last_stage_s = stage_s
        rec.num_steps += num_steps
        rec.sum_num_seqs += sum_seqs
        rec.kv_used_blocks_sum += kv_sum
        rec.kv_used_blocks_max = kv_max
        return True


@contextmanager
def _without_cyclic_gc():
    """The cyclic garbage collector off for the run: the loop allocates millions of short-lived tuples (heap
    entries, finished requests, cost-cache keys) and builds no reference cycles, so the collector's passes over the
    live ones only cost time (1e6 served requests: 8.4-9.1 -> 8.0-8.1 s CPU, the same peak memory); reference
    counting still frees everything as it goes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_without_cyclic_gc()
def run_open_loop(stream, engine: EngineConfig, step_cost: StepCost, table: RequestTable, itl: ItlRecorder,
                  recorder: StepRecorder, collector, router, *, num_replicas: int, request_latency_s: float,
                  max_macro_steps: int, check_chunk: Callable, token_delivery_s: float = 0.0) -> list[DirectReplica]:
    """Send every request of `stream` (a `simulator.stream.RequestStream`) to its replica in order and run the
    replicas to the end; return them. `router` picks a replica per request as `simulator.cluster.Router`;
    `check_chunk` validates each chunk before its requests are simulated. Runs with the cyclic GC off
    (`_without_cyclic_gc`)."""
    cost = MemoStepCost(step_cost)
    replicas = [DirectReplica(r, engine, cost, table, itl, recorder, collector.on_finish,
                              max_macro_steps=max_macro_steps, token_delivery_s=token_delivery_s)
                for r in range(num_replicas)]
    latency = float(request_latency_s)
    outstanding = [0] * num_replicas  # the routers that may run here do not look at it
    round_robin, next_replica = router.name == "round_robin", 0  # Router.pick's round robin, inlined
    now = 0.0  # the client's clock: it sends request k at max(now, arrival), as SimPy's timeouts add up
    sent_s, replica_of = table.sent_s, table.replica
    for chunk in stream.chunks():
        check_chunk(chunk)
        for position, request_id, arrival, prompt, output, prefix in zip(
                chunk.position.tolist(), chunk.id.tolist(), chunk.arrival_s.tolist(),
                chunk.num_prompt_tokens.tolist(), chunk.num_output_tokens.tolist(),
                chunk.num_shared_prefix_tokens.tolist()):
            wait = arrival - now
            if wait > 0:
                now = now + wait
            if round_robin:
                r = next_replica
                next_replica = r + 1 if r + 1 < num_replicas else 0
            else:
                r = router.pick(outstanding)
            replica = replicas[r]
            replica.advance(arrival + latency)  # the replica knows its next request's arrival in advance
            slot = table.add(position, request_id, arrival, prompt, output, prefix)
            sent_s[slot] = now
            replica_of[slot] = r
            replica.submit(slot, now + latency if latency > 0 else now)
        collector.flush()
    for replica in replicas:
        replica.advance(math.inf)
    collector.flush()
    return replicas
