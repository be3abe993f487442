"""The schedulers behind one protocol (`Scheduler`), in a registry keyed by what a replica runs: the engine
generation of continuous batching (`EngineConfig.scheduler`: "v1", "v0") or "static" batching.

A new release's scheduling rule is a `simulator.running_set.RunningSet` subclass (its `schedule()` and the
hooks the shared bookkeeping asks) plus one row here; the row also names the pipelining strategy
(`simulator.pipelining.STRATEGIES`) its replica runs with one stage and with several, and whether a replica
with pipeline parallelism has one scheduler per stage (vLLM V0's virtual engines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from simulator.config import SCHEDULER_GENERATIONS, EngineConfig
from simulator.itl import ItlRecorder
from simulator.kv_blocks import KVBlockPool
from simulator.request import RequestTable
from simulator.scheduler import V1Scheduler
from simulator.scheduler_v0 import V0Scheduler, VirtualEngines
from simulator.static_batching import StaticBatcher


class Scheduler(Protocol):
    """What a replica asks of its scheduler, whatever the rule: requests in, the state it reports."""

    pool: KVBlockPool
    num_running: int
    num_preemptions: int

    def add_request(self, req: int) -> None: ...

    def has_schedulable_work(self) -> bool: ...

    @property
    def num_waiting(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerKind:
    """One registry row. make: the scheduler of one replica (or of one stage, with `one_per_stage`);
    strategy: the pipelining strategy with one stage; pipelined_strategy: with several stages."""

    make: Callable[[EngineConfig, RequestTable, ItlRecorder], Scheduler]
    strategy: str
    pipelined_strategy: str
    one_per_stage: bool = False


SCHEDULERS: dict[str, SchedulerKind] = {
    "v1": SchedulerKind(make=V1Scheduler, strategy="serial", pipelined_strategy="pipelined"),
    "v0": SchedulerKind(make=V0Scheduler, strategy="serial", pipelined_strategy="virtual_engines",
                        one_per_stage=True),
    "static": SchedulerKind(make=StaticBatcher, strategy="static", pipelined_strategy="static"),
}
assert set(SCHEDULER_GENERATIONS) <= set(SCHEDULERS), "every engine generation needs a registered scheduler"


def scheduler_key(config: EngineConfig) -> str:
    """The registry key of a replica's scheduler."""
    return "static" if config.batching == "static" else config.scheduler


def make_scheduler(config: EngineConfig, table: RequestTable, itl: ItlRecorder,
                   num_stages: int) -> tuple[Scheduler | VirtualEngines, str]:
    """The scheduler of one replica with `num_stages` pipeline stages, and the name of its pipelining strategy."""
    kind = SCHEDULERS[scheduler_key(config)]
    if num_stages == 1:
        return kind.make(config, table, itl), kind.strategy
    if kind.one_per_stage:
        return VirtualEngines(config, table, itl, num_stages, kind.make), kind.pipelined_strategy
    return kind.make(config, table, itl), kind.pipelined_strategy
