"""Capacity planning across hardware: for each GPU or cluster, the fewest GPUs and the layout that serve the
load (``perfmodel.analysis.plan.plan_capacity``), their throughput per GPU and, given hourly GPU prices, the cost per
million output tokens; ranked cheapest first.

    >>> from perfmodel.analysis.plan_compare import compare_hardware
    >>> rows = compare_hardware(["h100-sxm", "h200-sxm"], {"h100-sxm": 2.0, "h200-sxm": 3.0}, request_rate=20,
    ...                         ttft_s_p99_target=2, tpot_s_p99_target=0.05, model="qwen2.5-32b")

Cost at the planned load: ``gpus x price per GPU-hour / (output tokens/s x 3600 / 1e6)``, the planner's
GPU-hours per million output tokens times the price. No price is built in: prices differ by provider, contract and
month, so the cost columns appear only for hardware whose price the caller gives (``--gpu-hour-cost``).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from perfmodel.errors import UserError
from perfmodel.analysis.plan import PlanResult, plan_capacity
from perfmodel.pool import executor
from perfmodel.scenario import ScenarioOptions


@dataclass(frozen=True, kw_only=True)
class HardwareChoice:
    """One hardware's answer: its fewest GPUs and layout (None when no count up to the limit serves the load)."""

    hardware: str
    gpu: str  # the GPU's display name
    gpus: int | None
    layout: str | None
    tp: int | None
    pp: int | None
    dp: int | None
    output_tokens_per_second: float  # at the planned load (nan when nothing serves it)
    output_tokens_per_second_per_gpu: float
    ttft_s_p99: float
    tpot_s_p99: float
    gpu_hours_per_million_output_tokens: float
    gpu_hour_cost: float | None  # the caller's price of one GPU-hour (None: not given)
    cost_per_million_output_tokens: float | None  # in the price's currency (None without a price)
    message: str  # the planner's one-sentence answer


def parse_costs(text: str | Sequence[str] | None) -> dict[str, float]:
    """``name=price[,name=price...]`` (repeatable) -> {name: price per GPU-hour}; one-line errors."""
    items = [text] if isinstance(text, str) else list(text or ())
    costs: dict[str, float] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, price = part.partition("=")
            try:
                value = float(price)
            except ValueError:
                value = math.nan
            if not sep or not name.strip() or not math.isfinite(value) or value <= 0:
                raise UserError(f"--gpu-hour-cost wants name=price with a positive price per GPU-hour, got {part!r}")
            costs[name.strip()] = value
    return costs


def compare_hardware(hardware: Sequence[str], gpu_hour_costs: Mapping[str, float] | None = None, *,
                     options: ScenarioOptions | None = None, **plan_kwargs: Any) -> list[HardwareChoice]:
    """Plan each hardware with the same load and targets (``plan_capacity``'s keywords) and rank the answers:
    those that serve the load first, by cost per million output tokens when every one has a price, else by
    GPU-hours per million output tokens (throughput per GPU); then the rest."""
    if not hardware:
        raise UserError("--hardware names no hardware to compare")
    costs = dict(gpu_hour_costs or {})
    unknown = sorted(set(costs) - set(hardware))
    if unknown:
        raise UserError(f"--gpu-hour-cost names {unknown[0]!r}, which is not among --hardware {','.join(hardware)}")
    base = options or ScenarioOptions(entry_point="serve")
    workers = plan_kwargs.pop("workers", None)
    plan_kwargs.pop("progress", None)  # several plans at once: one counter would mix them
    # one pool of worker processes for all plans, each plan's search in its own thread: the workers stay busy
    # while a plan screens its next GPU count or waits for its last simulation
    with executor(workers) as pool:
        _start_workers(pool)
        with cf.ThreadPoolExecutor(max_workers=len(hardware)) as threads:
            futures = [threads.submit(plan_capacity, options=base.replace(hardware=name), pool=pool, **plan_kwargs)
                       for name in hardware]
            results = [f.result() for f in futures]
    return rank([_choice(name, result, costs.get(name)) for name, result in zip(hardware, results)])


def _start_workers(pool) -> None:
    """Fork every worker process now, before any thread exists: forking a process with threads may deadlock the
    child. Python 3.11's ProcessPoolExecutor forks a worker per submit while none is idle, so as many short
    sleeps as workers, submitted together, start them all."""
    if isinstance(pool, cf.ProcessPoolExecutor):
        cf.wait([pool.submit(time.sleep, 0.02) for _ in range(pool._max_workers)])


def rank(choices: list[HardwareChoice]) -> list[HardwareChoice]:
    priced = all(c.cost_per_million_output_tokens is not None for c in choices if c.gpus)

    def key(c: HardwareChoice):
        if not c.gpus:
            return (1, math.inf, c.hardware)
        value = c.cost_per_million_output_tokens if priced else c.gpu_hours_per_million_output_tokens
        return (0, value, c.hardware)

    return sorted(choices, key=key)


def _choice(name: str, result: PlanResult, price: float | None) -> HardwareChoice:
    gpu = _gpu_name(name)
    best = result.best
    if best is None:
        nan = math.nan
        return HardwareChoice(hardware=name, gpu=gpu, gpus=None, layout=None, tp=None, pp=None, dp=None,
                              output_tokens_per_second=nan, output_tokens_per_second_per_gpu=nan, ttft_s_p99=nan,
                              tpot_s_p99=nan, gpu_hours_per_million_output_tokens=nan, gpu_hour_cost=price,
                              cost_per_million_output_tokens=None, message=result.message)
    gpu_hours = best.gpu_hours_per_million_output_tokens
    return HardwareChoice(hardware=name, gpu=gpu, gpus=best.gpus, layout=str(best.layout), tp=best.tp, pp=best.pp,
                          dp=best.dp, output_tokens_per_second=best.output_tokens_per_second,
                          output_tokens_per_second_per_gpu=best.output_tokens_per_second / best.gpus,
                          ttft_s_p99=best.ttft_s_p99, tpot_s_p99=best.tpot_s_p99,
                          gpu_hours_per_million_output_tokens=gpu_hours, gpu_hour_cost=price,
                          cost_per_million_output_tokens=None if price is None else gpu_hours * price,
                          message=result.message)


def _gpu_name(hardware: str) -> str:
    from hardware import load_hardware

    return load_hardware(hardware).gpu.display_name
