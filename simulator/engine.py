"""One engine replica as a SimPy process: its scheduler (`simulator.schedulers`, by engine generation or static
batching) and the pipelining strategy that runs its steps through the stages (`simulator.pipelining`): loop
{ schedule -> BatchStats -> cost -> wait -> apply }. The Replica keeps what every strategy shares: the request
inputs, the wake-up of a sleeping process, the hand-back of finished requests.
"""

from __future__ import annotations

from typing import Callable

import simpy

from simulator.batch import StepCost
from simulator.config import EngineConfig
from simulator.itl import ItlRecorder
from simulator.pipelining import STRATEGIES
from simulator.request import RequestTable
from simulator.scheduler_v0 import VirtualEngines
from simulator.schedulers import make_scheduler
from simulator.timeline import StepRecorder


class Replica:
    """One engine (one DP rank): a scheduler, a KV pool, and the SimPy process that runs its steps."""

    def __init__(self, env: simpy.Environment, index: int, config: EngineConfig, step_cost: StepCost,
                 table: RequestTable, itl: ItlRecorder, recorder: StepRecorder,
                 on_finish: Callable[[int], None], *, macro_steps: bool = True, max_macro_steps: int = 4096) -> None:
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
        self._wake: simpy.Event | None = None
        self.known_arrivals_s: list[float] | None = None  # this replica's arrival times, when known in advance
        self._num_arrived = 0
        self._virtual_wakes: list[simpy.Event | None] = []
        self.scheduler, self.strategy = make_scheduler(config, table, itl, self.num_stages)
        if isinstance(self.scheduler, VirtualEngines):
            self._virtual_wakes = [None] * self.num_stages
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
            wake = self._virtual_wakes[self.scheduler.add_request(req)]
            if wake is not None and not wake.triggered:
                wake.succeed()
            return
        self.scheduler.add_request(req)
        self._notify()

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
