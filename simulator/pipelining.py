"""The pipelining strategies of a replica: how its scheduler's steps pass through the pipeline stages, each a
SimPy process body taking the `simulator.engine.Replica`. The scheduler registry
(`simulator.schedulers.SCHEDULERS`) names which one a scheduler runs with one stage and with several.

- "serial" (one stage, continuous batching): the next step is scheduled when the previous one ends.
- "pipelined" (V1 with `num_stages > 1`): a new batch is scheduled as soon as stage 0 is free (up to
  `num_stages` batches in flight); a batch enters stage s when it has left stage s-1 and stage s is free, so an
  isolated batch takes `num_stages x` its stage time; its requests can be scheduled again only when it has
  left the last stage. With too few requests to fill every stage, the pipeline idles (the bubble).
- "virtual_engines" (V0 with `num_stages > 1`): one scheduler per stage (vLLM's virtual engines,
  `simulator.scheduler_v0.VirtualEngines`), each with one batch in flight, taking the arrivals waiting for a
  scheduler when its next step begins; the batches of all of them share
  the stages, each stage taking them in the order they reach it. With `step_cost.stage_split_s`, a stage may
  start preparing a batch (the CPU part of its stage time) as soon as it is free and computes once the
  previous stage is done, stages before the last skip what only the last spends (the LM head), and the last
  stage takes the next batch only once the previous one's result is back in the engine process (its lock is
  held for the whole remote call).
- "static" (static batching): one batch in flight, every stage in turn.

Macro-steps ("serial"): when the next steps can only be pure decodes (nothing prefilling, nobody admissible
from the waiting queue), they repeat with one more KV token per sequence until a sequence finishes, the KV
blocks they open would not be free, a request arrives, or `max_macro_steps` is reached. Those k steps are
costed with ONE call to the StepCost (BatchStats with array fields), or, for a short run before a known
arrival, one scalar call per step up to the arrival's step only, and the process sleeps once for their total
time; only the steps up to the one an arrival falls in (the first ending at or after it) are committed. The
result is identical to stepping one at a time (tested): step end times are accumulated with the same
additions, KV and ITL statistics are integer sums or kept per step.
- Open loop with a round-robin or random router: every replica knows its next arrival time in advance, so a
  scheduled step and the decode run after it are planned together (two cost calls, one sleep); requests that
  finish in that step are handed back at the end of the sleep (nothing depends on their timing then).
- Otherwise (least-loaded router, `max_concurrency`): the run starts after the step, and an arrival wakes the
  sleeping replica, which then commits the steps up to the arrival.
"""

from __future__ import annotations

from typing import Callable, Generator

import numpy as np

from simulator.batch import BatchStats
from simulator.decode_run import DecodeRun
from simulator.running_set import RunningSet
from simulator.scheduler_output import SchedulerOutput
from simulator.scheduler_v0 import VirtualEngines
from simulator.static_batching import StaticBatcher

# Each strategy is handed the simulator.engine.Replica it runs (``r: Replica`` below, an annotation only): engine
# imports this module to pick a strategy, so this module does not import engine back.


# ---- continuous batching, one stage ------------------------------------------------------------------
def serial(r: Replica):
    env, sched, cost, rec = r.env, r.scheduler, r.step_cost, r.recorder
    assert isinstance(sched, RunningSet)
    # With every arrival time known in advance (open loop, state-independent router), a step and the
    # decode run after it are planned together and slept through at once.
    fused = r.macro_steps and r.known_arrivals_s is not None
    clock = env.now
    while True:
        r._admit_pending()
        if r.loops_running and r._step_left_nothing():
            r.loops_running = False  # V0 stops its workers' loops at the end of that step (EngineConfig.idle_stop_s)
            clock = clock + r.config.idle_stop_s
            yield env.timeout(max(clock - env.now, 0.0))
            continue
        if not sched.has_schedulable_work():
            if r.output_lag and r.has_lagged_outputs:
                clock = yield from _extra_step(r, clock)
                continue
            yield r._sleep()
            r._wake = None
            clock = env.now
            continue
        out = sched.schedule()
        if out.is_empty:
            if out.preempted_ids:  # the state changed: schedule again
                continue
            raise RuntimeError(f"replica {r.index} cannot schedule any waiting request (a prompt longer "
                               "than max_num_batched_tokens with chunked prefill off?)")
        stage_s = float(cost(out.batch))
        if r.stops_loops:
            stage_s += r._restart_s()
        end = clock + stage_s
        r._last_step_start_s = clock
        r._arrived_by_step_start = r._num_arrived
        rec.add_step(r.index, clock, end, stage_s, out.batch, sched.num_running, sched.num_waiting,
                     sched.pool.num_used_blocks)
        if r.output_lag and r.has_lagged_outputs:  # the previous step's outputs, delivered during this one
            deliver_s = r._delivery_s(clock, end, out.batch)
            handed = r._deliver_lagged(deliver_s, out.batch.num_sampled_tokens)
            if handed:
                if not fused:  # (with every arrival known, when a request is handed back changes nothing)
                    yield env.timeout(max(deliver_s - env.now, 0.0))
                r._done(handed)
        if fused:
            finished = _step_outputs(r, out, sched.complete(out, end), clock, end)
            clock = yield from _decode_run(r, end, finished, stage_s)
            continue
        yield env.timeout(max(end - env.now, 0.0))
        finished = _step_outputs(r, out, sched.complete(out, end), clock, end)
        r._done(finished)
        clock = end
        if r.macro_steps:
            clock = yield from _decode_run(r, end, [], stage_s)


def _step_outputs(r: Replica, out: SchedulerOutput, finished: list[int], start_s: float, end_s: float) -> list[int]:
    """Deliver a step's first and last tokens (`Replica._delivered`), or with async output processing keep them
    for the next step (`Replica._keep_lagged`, delivered by `serial`); return the requests to hand back at
    `end_s`."""
    if r.output_lag:
        r._keep_lagged(end_s, out.prefill_ids, finished)
        return []
    r._delivered(end_s, out.batch.num_sampled_tokens, out.prefill_ids, finished)
    return finished


def _extra_step(r: Replica, start_s: float):
    """Async output processing with nothing left to schedule: `Replica._extra_step_outputs` from `start_s` (or
    now), handing its requests back at its delivery time. Returns its end."""
    r._arrived_by_step_start = r._num_arrived
    end, deliver_s, handed = r._extra_step_outputs(max(start_s, r.env.now), r.step_cost)
    if deliver_s > r.env.now:
        yield r.env.timeout(deliver_s - r.env.now)
    r._done(handed)
    if end > r.env.now:
        yield r.env.timeout(end - r.env.now)
    return end


def _decode_run(r: Replica, start_s: float, finished: list[int], last_stage_s: float):
    """Run the pure-decode steps that follow (if any) from `start_s` with one sleep; stop at the step
    the next arrival falls in. Return the end of the last step. `finished`: requests that finished at
    `start_s` and are yet to be handed back. `last_stage_s`: the previous step's time, to guess how many
    steps fit before a known arrival (a guess only sizes the arrays: a short run is followed by another)."""
    env, sched = r.env, r.scheduler
    known = r.known_arrivals_s is not None
    arrival = float("inf")
    max_steps = r.max_macro_steps
    if known and r._num_arrived < len(r.known_arrivals_s):
        arrival = r.known_arrivals_s[r._num_arrived]
        if last_stage_s > 0:
            max_steps = min(max_steps, 2 * int((arrival - start_s) / last_stage_s) + 8)
    run = None
    # a waiting arrival (async scheduling) joins the step after next; a finish not yet delivered (async output
    # processing) is handed back during the next step, which a closed loop must see on its own
    if arrival > start_s and not r._pending and (known or not r._lagged_finished):
        run = sched.plan_decode_run(max_steps, through_finishes=known)
        if run is not None and run.num_steps < 2 and not finished:
            run = None  # a single step: leave it to the scheduler
    if run is None:
        if start_s > env.now:
            yield env.timeout(start_s - env.now)
        r._done(finished)
        return start_s
    num_waiting = sched.num_waiting  # before arrivals during the run
    r._arrived_by_step_start = r._num_arrived  # an arrival ends the run in the step it falls in
    if known and run.is_short:
        # The planned length is a generous guess: cost one step at a time, up to the arrival's step only.
        stage_s, end_s = _cost_until(r, run, start_s, arrival)
        m = len(end_s)
        yield env.timeout(max(end_s[-1] - env.now, 0.0))
        sum_num_seqs = sum(run.num_seqs[:m])
    else:
        stage_s, end_s, m = yield from _cost_and_sleep(r, run, start_s, arrival)
        end_s = end_s[:m]
        sum_num_seqs = int(np.sum(run.num_seqs[:m]))  # everyone running decodes in these steps
    record = r.recorder.record
    done, kv_sum, kv_max, kv_per_step = sched.commit_decode_run(end_s, per_step_kv=record)
    r._last_step_start_s = float(end_s[-2]) if len(end_s) > 1 else start_s
    if r.output_lag:
        done = r._lag_run(start_s, end_s, done, run.batch)
    elif r.token_delivery_s > 0:
        t = r.table
        for req in done:  # each in the step it finished in (the step's sampled tokens: its sequences)
            i = int(np.searchsorted(end_s, t.finish_s[req]))
            r._delivered(float(end_s[i]), float(run.num_seqs[i]), last_ids=(req,))
    r.recorder.add_steps(r.index, start_s, end_s, stage_s, run.batch if record else None,
                            run.num_seqs[:m] if record else None, num_waiting, sum_num_seqs=sum_num_seqs,
                            kv_used_blocks_sum=kv_sum, kv_used_blocks_max=kv_max,
                            kv_used_blocks=lambda: kv_per_step)
    r._done(finished + done)
    return float(end_s[-1])


def _cost_until(r: Replica, run: DecodeRun, start_s: float, arrival_s: float) -> tuple[list[float], list[float]]:
    """Cost the planned decode steps one at a time (scalar BatchStats, as without macro-steps) until one
    ends at or after `arrival_s`; return their stage times and end times."""
    cost = r.step_cost
    stage_s: list[float] = []
    end_s: list[float] = []
    end = start_s
    for active, context in zip(run.num_seqs, run.decode_context_tokens):
        s = float(cost(BatchStats(0, active, 0.0, 0, context, active, active)))
        end += s  # ((start + s0) + s1) + ...: the same additions as one step at a time
        stage_s.append(s)
        end_s.append(end)
        if end >= arrival_s:
            break
    return stage_s, end_s


def _cost_and_sleep(r: Replica, run: DecodeRun, start_s: float, arrival: float):
    """Cost the whole planned run with one array call and sleep to the step an arrival falls in (known in
    advance, or waking us up); return the stage times, the end times and how many steps were done."""
    env = r.env
    known = r.known_arrivals_s is not None
    stage_s = np.asarray(r.step_cost(run.batch), dtype=np.float64)
    acc = stage_s.copy()
    acc[0] += start_s
    end_s = np.cumsum(acc)  # ((start + s0) + s1) + ...: the same additions as one step at a time
    m = run.num_steps
    if known:
        if arrival < end_s[-1]:
            m = int(np.searchsorted(end_s, arrival, side="left")) + 1
        yield env.timeout(max(float(end_s[m - 1]) - env.now, 0.0))
    else:
        # Sleep through the run; an arrival wakes us, and we stop at the step it falls in.
        wake = r._sleep()
        timer = env.timeout(max(float(end_s[-1]) - env.now, 0.0))
        timer.callbacks.append(lambda _event: None if wake.triggered else wake.succeed())
        yield wake
        r._wake = None
        now = env.now
        if now < end_s[-1]:
            m = int(np.searchsorted(end_s, now, side="left")) + 1
            if end_s[m - 1] > now:
                yield env.timeout(float(end_s[m - 1]) - now)
    return stage_s, end_s, m


# ---- continuous batching, pipeline parallel ----------------------------------------------------------
def pipelined(r: Replica):
    env, sched, cost, rec = r.env, r.scheduler, r.step_cost, r.recorder
    assert isinstance(sched, RunningSet)
    num_stages = r.num_stages
    stage_free_s = [env.now] * num_stages
    in_flight = [0]

    def on_batch_done(out: SchedulerOutput, end: float, _event) -> None:
        in_flight[0] -= 1
        r._done(sched.complete(out, end))
        r._notify()

    while True:
        if in_flight[0] < num_stages and sched.has_schedulable_work():
            out = sched.schedule()
            if not out.is_empty:
                stage_s = float(cost(out.batch))
                t = env.now
                for s in range(num_stages):
                    t = max(t, stage_free_s[s]) + stage_s
                    stage_free_s[s] = t
                in_flight[0] += 1
                rec.add_step(r.index, env.now, t, stage_s, out.batch, sched.num_running,
                             sched.num_waiting, sched.pool.num_used_blocks)
                done = env.timeout(t - env.now)
                done.callbacks.append(lambda event, out=out, end=t: on_batch_done(out, end, event))
                yield env.timeout(stage_free_s[0] - env.now)
                continue
        yield r._sleep()
        r._wake = None


# ---- V0 with pipeline parallelism: a scheduler per stage ---------------------------------------------
def virtual_engines(r: Replica):
    """Start one process per V0 virtual engine; they share the stages' free times (FIFO per stage)."""
    engines = r.scheduler
    assert isinstance(engines, VirtualEngines)
    stage_free_s = [r.env.now] * r.num_stages
    for v in range(len(engines.schedulers)):
        r.env.process(_virtual_engine(r, v, stage_free_s))
    yield r.env.timeout(0)


def _virtual_engine(r: Replica, v: int, stage_free_s: list[float]):
    """Virtual engine `v`: schedule a batch, send it through every stage (each stage takes batches in the
    order they reach it), then back to the engine process (`step_cost.stage_split_s`'s host time, if the cost
    has it), apply it, repeat; one batch in flight (vLLM 0.7.0 `AsyncLLMEngine.run_engine_loop` awaits each
    virtual engine's step before starting its next). The last stage is not free for the next batch until its
    result is back: vLLM 0.7.0 `RayDistributedExecutor._driver_execute_model_async` holds a stage's lock
    (`vllm.utils._run_task_with_lock`) around the whole remote `execute_model` call, and the last stage's call
    returns only after sampling, i.e. after its GPU work; the next virtual engine's call to it is sent only
    then."""
    env, cost, rec = r.env, r.step_cost, r.recorder
    split = getattr(cost, "stage_split_s", None)
    engines = r.scheduler
    assert isinstance(engines, VirtualEngines)
    sched = engines.schedulers[v]
    while True:
        if engines.has_unfinished(v):  # its next step begins: the arrivals since the last step start go in first
            r._admit_arrivals()
        if not sched.has_schedulable_work():
            engines.busy[v] = False
            if not any(engines.busy) and r.loops_running and not r._tracker_fed():
                # the engine loop stops the workers' loops before it waits for requests; arrivals meanwhile wait
                r.loops_running, r._stopping = False, True
                yield env.timeout(r.config.idle_stop_s)
                r._stopping = False
            r._virtual_wakes[v] = env.event()
            if not any(engines.busy) and engines.arrivals:  # the last busy engine went idle with arrivals waiting:
                r._admit_arrivals()  # the engine loop starts the engines' steps in index order (the wakes' order)
            yield r._virtual_wakes[v]
            r._virtual_wakes[v] = None
            continue
        engines.busy[v] = True
        out = sched.schedule()
        if out.is_empty:
            if out.preempted_ids:
                continue
            raise RuntimeError(f"replica {r.index} virtual engine {v} cannot schedule any waiting request")
        stage_s = float(cost(out.batch))
        prep_s, last_only_s, host_s = split(out.batch) if split is not None else (0.0, 0.0, 0.0)
        dispatch = end = env.now + (r._restart_s() if r.stops_loops else 0.0)
        last = r.num_stages - 1
        for s in range(r.num_stages):
            # a stage prepares the batch as soon as it is free, then computes once the previous stage is done
            compute_s = stage_s - prep_s - (last_only_s if s < last else 0.0)
            end = max(end, max(dispatch, stage_free_s[s]) + prep_s) + compute_s
            stage_free_s[s] = end
        end += host_s
        stage_free_s[last] = end
        rec.add_step(r.index, env.now, end, stage_s, out.batch, engines.num_running, engines.num_waiting,
                     engines.num_used_blocks)
        yield env.timeout(end - env.now)
        r._done(sched.complete(out, end))


# ---- static batching ---------------------------------------------------------------------------------
def static_batches(r: Replica):
    env, batcher, rec = r.env, r.scheduler, r.recorder
    assert isinstance(batcher, StaticBatcher)
    t = r.table
    while True:
        if not batcher.has_schedulable_work():
            yield r._sleep()
            r._wake = None
            continue
        clock = env.now
        sb = batcher.next_batch()
        stage_s = np.asarray(r.step_cost(sb.batch), dtype=np.float64)
        step_s = stage_s * r.num_stages            # one batch in flight: every stage in turn
        end_s = np.cumsum(np.concatenate(([clock], step_s)))[1:]
        used = batcher.pool.num_used_blocks
        rec.add_steps(r.index, clock, end_s, stage_s, sb.batch, batcher.num_running, batcher.num_waiting,
                      sum_num_seqs=len(sb.ids) * len(end_s), kv_used_blocks_sum=used * len(end_s),
                      kv_used_blocks_max=used, kv_used_blocks=lambda: np.full(len(end_s), used))
        rec.padding_tokens += sb.num_padding_tokens
        rec.computed_tokens += sb.num_computed_tokens
        batcher.complete(sb, end_s)
        # Hand each request back when its own last token is out (the batch itself ends later).
        for req in sorted(sb.ids, key=lambda r: (t.finish_s[r], r)):
            wait = t.finish_s[req] - env.now
            if wait > 0:
                yield env.timeout(wait)
            r.on_finish(req)
        if end_s[-1] > env.now:
            yield env.timeout(float(end_s[-1]) - env.now)


STRATEGIES: dict[str, Callable[["Replica"], Generator]] = {
    "serial": serial, "pipelined": pipelined, "virtual_engines": virtual_engines, "static": static_batches,
}
"""Pipelining strategies by name (module docstring)."""
