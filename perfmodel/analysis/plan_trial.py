"""One layout at the planned load (``perfmodel.analysis.plan``, step 3 of its search): simulated in a worker process and
judged against the rate and the latency targets (``steady_state``), at the point estimate and, with a
confidence level, at its interval's ends."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.scenario import Scenario, ScenarioOptions
from perfmodel.analysis.steady_state import steady_state
from perfmodel.uncertainty.intervals import DEFAULT_LEVEL, interval_for
from simulator.workload import LengthDistribution


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One layout looked at: the closed form's verdict and, when simulated, what the simulation showed."""

    gpus: int
    tp: int
    pp: int
    dp: int
    status: str  # "accepted", "rejected" (simulated) or "pruned" (closed form)
    reason: str  # why rejected or pruned ('' when accepted)
    analytical_requests_per_second: float  # closed-form offline maximum (nan when it does not fit)
    achieved_requests_per_second: float = math.nan  # rate x (output tokens sampled / asked for), 2nd half
    ttft_s_p99: float = math.nan
    tpot_s_p99: float = math.nan
    e2e_s_p99: float = math.nan
    latency_growth: float = math.nan  # mean TTFT, last quarter of arrivals / second quarter
    output_tokens_per_second: float = math.nan  # at the planned load
    gpu_hours_per_million_output_tokens: float = math.nan
    point_status: str = ""  # the verdict of the point estimate alone ('' when not simulated)
    interval: Any = None  # {"level", figure: [low, high]} of the simulated figures (perfmodel.uncertainty.intervals)

    @property
    def layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp)


@dataclass(frozen=True, kw_only=True)
class TrialTask:
    """What a worker process needs to simulate one layout: picklable names and numbers only."""

    options: ScenarioOptions  # names and numbers: the worker rebuilds the scenario from them
    tp: int
    pp: int
    dp: int
    analytical_requests_per_second: float
    input_len: LengthDistribution
    output_len: LengthDistribution
    num_prompts: int
    request_rate: float
    burstiness: float
    seed: int
    ttft_s_p99_target: float | None
    tpot_s_p99_target: float | None
    confidence: float | None = None
    interval_level: float = DEFAULT_LEVEL


@functools.lru_cache(maxsize=8)
def _scenario(options: ScenarioOptions) -> Scenario:
    return Scenario.from_options(options)


def simulate_trial(task: TrialTask) -> Trial:
    """Simulate one layout at the planned load and judge it (runs in a worker process)."""
    from perfmodel.analysis.simulate import build_requests

    scenario = _scenario(task.options)
    layout = Layout(tp=task.tp, pp=task.pp, dp=task.dp)
    requests = build_requests(input_len=task.input_len, output_len=task.output_len, num_prompts=task.num_prompts,
                              request_rate=task.request_rate, burstiness=task.burstiness, seed=task.seed,
                              max_model_len=scenario.max_model_len)
    base = dict(gpus=layout.gpus, tp=layout.tp, pp=layout.pp, dp=layout.dp,
                analytical_requests_per_second=task.analytical_requests_per_second)
    try:
        result = scenario.simulate(layout, requests, seed=task.seed, served=True)
    except UserError as exc:
        return Trial(**base, status="rejected", reason=str(exc), point_status="rejected")
    trial = _judge(result, task, base)
    interval = _interval(scenario, layout, trial, task.interval_level)
    trial = dataclasses.replace(trial, point_status=trial.status, interval=interval)
    if task.confidence is None or interval is None:
        return trial
    return _judge_confident(scenario, layout, requests, task, base, trial)


PLAN_FIGURES = ("output_tokens_per_second", "ttft_s_p99", "tpot_s_p99", "e2e_s_p99")


def _interval(scenario, layout: Layout, trial: Trial, level: float) -> dict | None:
    iv = interval_for(scenario, layout, {n: getattr(trial, n) for n in PLAN_FIGURES}, mode="online", level=level)
    return iv.to_dict() if iv is not None and iv.bounds else None


def _judge_confident(scenario, layout: Layout, requests, task: TrialTask, base: dict, point: Trial) -> Trial:
    """The point verdict's trial re-judged at the interval's ends (``plan_capacity``'s ``confidence``)."""
    iv = point.interval
    reasons = [point.reason] if point.status != "accepted" else []
    low = iv.get("output_tokens_per_second", [point.output_tokens_per_second])[0] / point.output_tokens_per_second
    slow = scenario.simulate(layout, requests, seed=task.seed, step_time_scale=1.0 / low) if low < 1 else None
    if slow is not None:
        judged = _judge(slow, dataclasses.replace(task, ttft_s_p99_target=None, tpot_s_p99_target=None), base)
        if judged.status != "accepted":
            reasons.append(f"at the low end of throughput (x{low:.2f}): {judged.reason}")
    for name, target in (("ttft_s_p99", task.ttft_s_p99_target), ("tpot_s_p99", task.tpot_s_p99_target)):
        if target is not None and name in iv and iv[name][1] > target:
            reasons.append(f"high p99 {name.split('_')[0].upper()} {iv[name][1]:.3g} s > {target:g}")
    return dataclasses.replace(point, status="rejected" if reasons else "accepted", reason="; ".join(reasons))


def _judge(result, task: TrialTask, base: dict) -> Trial:
    v = steady_state(result, task.request_rate)
    m = result.metrics
    reasons = list(v.reasons)
    if task.ttft_s_p99_target is not None and m.ttft_s_p99 > task.ttft_s_p99_target:
        reasons.append(f"p99 TTFT {m.ttft_s_p99:.3g} s > {task.ttft_s_p99_target:g}")
    if task.tpot_s_p99_target is not None and m.tpot_s_p99 > task.tpot_s_p99_target:
        reasons.append(f"p99 TPOT {m.tpot_s_p99 * 1e3:.3g} ms > {task.tpot_s_p99_target * 1e3:g}")
    return Trial(**base, status="rejected" if reasons else "accepted", reason="; ".join(reasons),
                 achieved_requests_per_second=v.achieved_requests_per_second, ttft_s_p99=m.ttft_s_p99,
                 tpot_s_p99=m.tpot_s_p99, e2e_s_p99=m.e2e_s_p99, latency_growth=v.latency_growth,
                 output_tokens_per_second=v.output_tokens_per_second,
                 gpu_hours_per_million_output_tokens=base["gpus"] / 3600 / (v.output_tokens_per_second / 1e6))
