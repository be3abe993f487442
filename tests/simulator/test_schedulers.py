"""The scheduler registry and the pipelining strategies it names."""

from __future__ import annotations

import pytest

from simulator.config import SCHEDULER_GENERATIONS, EngineConfig
from simulator.itl import ItlRecorder
from simulator.pipelining import STRATEGIES
from simulator.request import Request, RequestTable
from simulator.running_set import RunningSet
from simulator.scheduler_v0 import VirtualEngines
from simulator.schedulers import SCHEDULERS, make_scheduler, scheduler_key


def _config(key: str) -> EngineConfig:
    if key == "static":
        return EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, num_kv_blocks=64, batching="static")
    return EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, num_kv_blocks=64, scheduler=key,
                        enable_chunked_prefill=key != "v0")


def test_every_generation_is_registered_and_names_known_strategies():
    assert set(SCHEDULER_GENERATIONS) | {"static"} == set(SCHEDULERS)
    for kind in SCHEDULERS.values():
        assert kind.strategy in STRATEGIES and kind.pipelined_strategy in STRATEGIES


@pytest.mark.parametrize("key", sorted(SCHEDULERS))
@pytest.mark.parametrize("num_stages", [1, 2])
def test_make_scheduler_follows_the_registry(key, num_stages):
    config = _config(key)
    assert scheduler_key(config) == key
    table = RequestTable([Request(0, 0.0, 10, 5)])
    scheduler, strategy = make_scheduler(config, table, ItlRecorder(), num_stages)
    kind = SCHEDULERS[key]
    assert strategy == (kind.strategy if num_stages == 1 else kind.pipelined_strategy)
    if num_stages > 1 and kind.one_per_stage:
        assert isinstance(scheduler, VirtualEngines) and len(scheduler.schedulers) == num_stages
    else:
        assert isinstance(scheduler, kind.make)
    if key != "static":  # V0 and V1 are siblings over the shared bookkeeping, neither a subclass of the other
        assert isinstance(scheduler if num_stages == 1 or not kind.one_per_stage else scheduler.schedulers[0],
                          RunningSet)
