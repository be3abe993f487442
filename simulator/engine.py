"""One engine replica as a SimPy process: its scheduler (`simulator.schedulers`, by engine generation or static
batching) and the pipelining strategy that runs its steps through the stages (`simulator.pipelining`): loop
{ schedule -> BatchStats -> cost -> wait -> apply }. The Replica keeps what every strategy shares: the request
inputs, the wake-up of a sleeping process, the hand-back of finished requests.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import simpy

from simulator.batch import BatchStats, StepCost
from simulator.config import EngineConfig
from simulator.itl import ItlRecorder
from simulator.pipelining import STRATEGIES
from simulator.request import RequestTable
from simulator.scheduler_v0 import VirtualEngines
from simulator.schedulers import make_scheduler
from simulator.timeline import StepRecorder


_SAME_INSTANT_S = 1e-9  # times closer than this are one instant for the admission of waiting arrivals


class Replica:
    """One engine (one DP rank): a scheduler, a KV pool, and the SimPy process that runs its steps."""

    def __init__(self, env: simpy.Environment, index: int, config: EngineConfig, step_cost: StepCost,
                 table: RequestTable, itl: ItlRecorder, recorder: StepRecorder,
                 on_finish: Callable[[int], None], *, macro_steps: bool = True, max_macro_steps: int = 4096,
                 token_delivery_s: float = 0.0) -> None:
        self.env = env
        self.index = index
        self.config = config
        self.step_cost = step_cost
        self.num_stages = int(getattr(step_cost, "num_stages", 1))
        if self.num_stages < 1:
            raise ValueError(f"step_cost.num_stages must be >= 1, got {self.num_stages}")
        self.table = table
        self.recorder = recorder
        self.on_finish = on_finish
        self.macro_steps = macro_steps
        self.max_macro_steps = max_macro_steps
        self.token_delivery_s = token_delivery_s  # see _delivered
        self._wake: simpy.Event | None = None
        self.known_arrivals_s: list[float] | None = None  # this replica's arrival times, when known in advance
        self._num_arrived = 0
        # Async scheduling (EngineConfig.async_scheduling): arrivals wait here, (arrival time, request), until
        # the scheduler could have seen them; _last_step_start_s is when the latest step began.
        self._pending: list[tuple[float, int]] | None = None
        self._last_step_start_s = float("-inf")
        self._virtual_wakes: list[simpy.Event | None] = []
        self.scheduler, self.strategy = make_scheduler(config, table, itl, self.num_stages)
        if config.async_output_processing and self.strategy != "serial":
            raise ValueError("async_output_processing is modelled with one pipeline stage only (vLLM V0 turns it "
                             "off with pipeline parallelism)")
        # Async output processing (see _lag): the requests whose first token, or last, the latest step sampled
        self.output_lag = config.async_output_processing
        self._lagged_first: list[int] = []
        self._lagged_finished: list[int] = []
        self._cpu_time_s = getattr(step_cost, "cpu_time_s", None)
        if isinstance(self.scheduler, VirtualEngines):
            self._virtual_wakes = [None] * self.num_stages
        if config.stops_worker_loops and self.strategy not in ("serial", "virtual_engines"):
            raise ValueError("idle_stop_s / idle_restart_s are modelled with one stage or V0's virtual engines only")
        # V0's worker loops (EngineConfig.idle_stop_s): stopped until the first step; _stopping while a stop runs.
        # loops_running stays False for an engine that does not stop them, so the stop tests end at once.
        self.stops_loops = config.stops_worker_loops
        self.loops_running = False
        self._stopping = False
        self._arrived_by_step_start = 0  # _num_arrived when the latest step began (_step_left_nothing)
        self._tracker_since_s = 0.0  # V0 with PP: when the oldest arrival waiting in the request tracker came
        if config.async_scheduling and self.strategy == "serial":
            self._pending = []
        body = STRATEGIES[self.strategy](self)
        self.process = env.process(body)

    @property
    def num_preemptions(self) -> int:
        return self.scheduler.num_preemptions

    # ---- inputs ------------------------------------------------------------------------------------------
    def submit(self, req: int) -> None:
        """A request arrives now."""
        self._num_arrived += 1
        if isinstance(self.scheduler, VirtualEngines):
            if not self.scheduler.arrivals:
                self._tracker_since_s = self.env.now
            self.scheduler.arrivals.append(req)
            if not any(self.scheduler.busy) and not self._stopping:  # every engine idle: the loop wakes on this
                self._admit_arrivals()
            return
        if self._pending is not None:
            self._pending.append((self.env.now, req))
        else:
            self.scheduler.add_request(req)
        self._notify()

    def _admit_arrivals(self) -> None:
        """V0 with pipeline parallelism: the waiting arrivals go to the virtual engines' schedulers now, and the idle
        engines that got requests start (`VirtualEngines.admit_arrivals`)."""
        for v in self.scheduler.admit_arrivals():
            wake = self._virtual_wakes[v]
            if wake is not None and not wake.triggered:
                wake.succeed()

    def _admit_pending(self) -> None:
        """Async scheduling: hand the scheduler the arrivals it could see before the step it schedules now.

        vLLM 0.26 (vllm/v1/engine/core.py EngineCore.step_with_batch_queue, two batches in flight with async
        scheduling: VllmConfig.max_concurrent_batches) schedules step k+1 as soon as step k-1's output is back,
        i.e. when step k starts, and reads the input queue only between those calls (EngineCoreProc.run_busy_loop,
        _process_input_queue). So the step scheduled now, starting at the end of the latest step, takes the
        requests that arrived by that step's start. When nothing else is schedulable the step in flight held
        no work in vLLM either (a request is not scheduled past its last token), and waiting arrivals go now."""
        pending = self._pending
        if not pending:
            return
        if not self.scheduler.has_schedulable_work():
            cutoff = float("inf")
        else:  # an arrival at that very instant counts as before it: step ends are sums that may differ by an ulp
            cutoff = self._last_step_start_s + _SAME_INSTANT_S
        keep = []
        for arrived_s, req in pending:
            if arrived_s <= cutoff:
                self.scheduler.add_request(req)
            else:
                keep.append((arrived_s, req))
        self._pending = keep

    def _delivered(self, end_s: float, num_tokens: float, first_ids=(), last_ids=()) -> None:
        """An API server streams a step's tokens one request after another: vLLM 0.26's AsyncLLM output_handler
        (vllm/v1/engine/async_llm.py) turns the engine's whole output (every running request's token) into
        RequestOutputs (OutputProcessor.process_outputs) before the requests' generators write their chunks. A first
        token (`first_ids` whose first token came at `end_s`) and a last one (`last_ids`) reach the client
        `token_delivery_s` per token of that step later. Gaps between tokens keep their mean. The "serial"
        strategy only (one stage, continuous batching)."""
        delay = self.token_delivery_s * num_tokens
        if not delay > 0:
            return
        t = self.table
        for req in first_ids:
            if t.first_token_s[req] == end_s:
                t.first_token_s[req] = end_s + delay
        for req in last_ids:
            t.finish_s[req] += delay

    def _lag(self, end_s: float, deliver_s: float, first_ids: Sequence[int], finished: list[int],
             num_tokens: float) -> list[int]:
        """Async output processing (`EngineConfig.async_output_processing`): the step that ends at `end_s` delivers,
        at `deliver_s` (its start plus its CPU part, `_delivery_s`), what the step before it sampled: the first
        tokens of `_lagged_first` and the last ones of `_lagged_finished`; it keeps its own (`first_ids` whose first
        token came at `end_s`, and `finished`) for the next. Returns the requests to hand back now.

        vLLM 0.7.0 queues a step's sampler output (`LLMEngine.step`, `ctx.append_output`) and turns it into request
        outputs in `async_callback`, which the next step's model runner calls once that step's forward is launched
        (`ModelRunner.execute_model`); `MQLLMEngine` sends them from there (`_async_socket_engine_callback`)."""
        done = self._deliver_lagged(deliver_s, num_tokens)
        self._keep_lagged(end_s, first_ids, finished)
        return done

    def _deliver_lagged(self, deliver_s: float, num_tokens: float) -> list[int]:
        """`_lag`'s first half: deliver the kept outputs at `deliver_s`; return the finished requests."""
        t = self.table
        first, done = self._lagged_first, self._lagged_finished
        for req in first:
            t.first_token_s[req] = deliver_s
        for req in done:
            t.finish_s[req] = deliver_s
        self._lagged_first, self._lagged_finished = [], []
        self._delivered(deliver_s, num_tokens, first, done)
        return done

    def _keep_lagged(self, end_s: float, first_ids: Sequence[int], finished: list[int]) -> None:
        """`_lag`'s second half: keep the outputs of the step that ended at `end_s` for the next step."""
        t = self.table
        self._lagged_first = [req for req in first_ids if t.first_token_s[req] == end_s]
        self._lagged_finished = list(finished)

    def _delivery_s(self, start_s: float, end_s: float, batch: BatchStats) -> float:
        """When a step from `start_s` to `end_s` delivers the previous step's outputs: after its CPU part
        (`StepCost.cpu_time_s`, 0 without it), at most at its end."""
        cpu_s = float(self._cpu_time_s(batch)) if self._cpu_time_s is not None else 0.0
        return min(end_s, start_s + cpu_s)

    def _lag_run(self, start_s: float, end_s: np.ndarray, finished: list[int], batch: BatchStats) -> list[int]:
        """`_lag` over a run of decode steps from `start_s` (`end_s`, each step's end; `batch`, their BatchStats
        arrays) in which `finished` finished (each at its step's end, `finish_s`): the step after each finish
        delivers it; the run's last step's finishes wait for the next step. Returns the requests to hand back at
        the run's end."""
        t = self.table
        m = len(end_s)
        starts = np.concatenate(([start_s], end_s[:-1]))
        cpu_s = (np.broadcast_to(np.asarray(self._cpu_time_s(batch), dtype=float), (len(batch.num_seqs),))[:m]
                 if self._cpu_time_s is not None else np.zeros(m))
        deliver_s = np.minimum(end_s, starts + cpu_s)
        num_seqs = batch.num_seqs
        handed = self._deliver_lagged(float(deliver_s[0]), float(num_seqs[0]))
        by_step: dict[int, list[int]] = {}
        for req in finished:
            by_step.setdefault(int(np.searchsorted(end_s, t.finish_s[req])), []).append(req)
        for i in sorted(by_step):
            if i < m - 1:
                for req in by_step[i]:
                    t.finish_s[req] = float(deliver_s[i + 1])
                self._delivered(float(deliver_s[i + 1]), float(num_seqs[i + 1]), (), by_step[i])
                handed.extend(by_step[i])
            else:
                self._lagged_finished.extend(by_step[i])
        return handed

    def _extra_step_outputs(self, start_s: float, step_cost: StepCost) -> tuple[float, float, list[int]]:
        """Async output processing with nothing left to schedule: the decode step vLLM 0.7.0 still runs for
        sequences whose last token it has not processed (`Scheduler._schedule_running`: "an extra decode run"),
        costed with `step_cost` and recorded from `start_s`; it delivers what the step before sampled. Without such
        sequences (only first tokens wait, their requests waiting for KV blocks) no step runs and they are
        delivered at `start_s`. Returns (its end, the delivery time, the requests to hand back then)."""
        lagged = self._lagged_finished
        n = len(lagged)
        end = deliver_s = start_s
        if n:
            finish_kv = self.table.finish_kv_tokens
            batch = BatchStats(0, n, 0.0, 0, sum(finish_kv[req] + 1 for req in lagged), n, n)
            stage_s = float(step_cost(batch))
            end = start_s + stage_s
            deliver_s = self._delivery_s(start_s, end, batch)
            sched = self.scheduler
            self.recorder.add_step(self.index, start_s, end, stage_s, batch, sched.num_running, sched.num_waiting,
                                   sched.pool.num_used_blocks)
        return end, deliver_s, self._lag(end, deliver_s, (), [], n)

    @property
    def has_lagged_outputs(self) -> bool:
        """Async output processing: outputs sampled but not yet delivered."""
        return bool(self._lagged_first or self._lagged_finished)

    def _step_left_nothing(self) -> bool:
        """One stage: whether the latest step left the engine nothing unfinished of what it had when the step began
        (vLLM 0.7.0 `LLMEngine.step` stops the workers' loops then; `MQLLMEngine` adds the requests that came
        meanwhile only after the step): nothing running, no outputs held for the next step, and every waiting
        request arrived during the step."""
        sched = self.scheduler
        return (not (self.output_lag and self.has_lagged_outputs) and sched.num_running == 0
                and len(sched.waiting) <= self._num_arrived - self._arrived_by_step_start)

    def _tracker_fed(self) -> bool:
        """V0 with PP, the last busy virtual engine just finished its step: whether a request was waiting in the
        request tracker before that moment. vLLM 0.7.0 `run_engine_loop` steps an engine again after a step that
        produced outputs, and that `engine_step` takes the tracker's requests first, so the loops stop only when it
        found none (a request sent on the step's last token comes later: `submit` at the same instant does not
        count)."""
        return bool(self.scheduler.arrivals) and self._tracker_since_s < self.env.now

    def _restart_s(self) -> float:
        """The extra time of a step that starts the workers' loops again (`EngineConfig.idle_restart_s`), else 0.
        Called only when the engine stops them (`stops_loops`)."""
        if self.loops_running:
            return 0.0
        self.loops_running = True
        return self.config.idle_restart_s

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.triggered:
            wake.succeed()

    def _sleep(self):
        self._wake = self.env.event()
        return self._wake

    def _done(self, finished: list[int]) -> None:
        for req in finished:
            self.on_finish(req)
