"""Capacity planning: the fewest GPUs (and their layout) that serve a request rate within p99 latency targets.

    >>> from perfmodel.analysis.plan import plan_capacity
    >>> result = plan_capacity(request_rate=20, ttft_s_p99_target=2.0, tpot_s_p99_target=0.1, model="llama-3.1-70b",
    ...                        hardware="hgx-h200")
    >>> result.best.gpus, result.best.layout

The search, for GPU counts 1, 2, 4, ... and node multiples up to ``gpus_max`` (and the cluster's per-job node
limit), in increasing order:

1. every valid TP x PP x DP layout of the count is checked with the closed form (``predict_layout`` on an
   offline workload of the mean lengths): a layout that does not fit, whose analytical maximum throughput is
   below ``PRUNE_FRACTION`` of the rate, or whose single-sequence prefill or decode step alone exceeds a
   latency target, cannot meet it and is not simulated;
2. the others are simulated (in parallel processes) with the same seeded Poisson (or gamma, ``burstiness``)
   arrivals at the rate, long enough for a steady state (``num_requests_for``: arrivals over at least 60 s
   and 4 end-to-end latencies, 200 to 3000 requests) unless ``num_prompts`` is given;
3. a layout is accepted (``perfmodel.analysis.plan_trial``) when it sustains the rate and meets the targets:
   - it keeps up: over the second half of the arrival window (or the part after 1.5 median end-to-end
     latencies, at most the last quarter: the batch fills for about one latency) it samples output tokens at
     least at ``SUSTAIN_FRACTION`` of the rate the arrivals ask for (the output tokens of the requests that arrived
     in the same window shifted back by the median emission lag, per second);
     ``achieved_requests_per_second`` is the rate times that ratio. (Counting finished requests instead
     misleads when latencies are not short next to the window: the middle finishes fall in the drain.)
   - the queue does not grow: the mean TTFT of the last quarter of requests (by arrival) exceeds the
     second quarter's (the first is warm-up) by at most max(0.5 s, 50 %);
   - p99 TTFT and p99 TPOT (over all requests, vLLM's definitions) within the targets.

The first count with an accepted layout is the answer; its best layout is the one with the lowest p99
end-to-end latency. Cost: GPU-hours per million output tokens at the planned load,
``gpus / 3600 / (output_tokens_per_second / 1e6)``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from perfmodel.engine.args import EngineArgs
from perfmodel.errors import UserError
from perfmodel.layout import Layout, enumerate_layouts
from perfmodel.analysis.plan_trial import Trial, simulate_trial, TrialTask
from perfmodel.pool import executor
from perfmodel.scenario import Scenario, ScenarioOptions
from perfmodel.uncertainty.intervals import DEFAULT_LEVEL
from simulator.workload import LengthDistribution

PRUNE_FRACTION = 0.9  # the closed form may be a little pessimistic: simulate what comes within 10% of the rate
MIN_REQUESTS, MIN_SECONDS, E2E_MULTIPLE, MAX_REQUESTS = 200, 60.0, 4.0, 3000


@dataclass(frozen=True, kw_only=True)
class PlanResult:
    """The answer (``best``: None when no count up to ``gpus_max`` meets the target) and every trial."""

    request_rate: float
    ttft_s_p99_target: float | None
    tpot_s_p99_target: float | None
    gpus_max: int
    num_requests: int
    best: Trial | None
    trials: tuple[Trial, ...]
    message: str
    engine: EngineArgs  # the engine every layout was simulated with, as resolved (vLLM's defaults filled in)
    confidence: float | None = None  # plan on the interval's ends at this level (None: the point estimate)
    point_estimate_gpus: int | None = None  # what the point estimate alone would have chosen, with confidence
    notes: tuple[str, ...] = ()  # the scenario's notes (Scenario.notes)

    @property
    def gpus(self) -> int | None:
        return self.best.gpus if self.best else None


def gpu_counts(gpus_max: int, gpus_per_node: int, max_nodes_per_job: int | None) -> list[int]:
    """1, 2, 4, ... and multiples of a node, up to ``gpus_max`` and the per-job node limit."""
    limit = gpus_max if max_nodes_per_job is None else min(gpus_max, max_nodes_per_job * gpus_per_node)
    counts = {2**k for k in range(32) if 2**k <= limit} | set(range(gpus_per_node, limit + 1, gpus_per_node))
    return sorted(counts)


def num_requests_for(request_rate: float, mean_output_tokens: float = 0.0, ttft_s_p99_target: float | None = None,
                     tpot_s_p99_target: float | None = None) -> int:
    """Requests for a steady state: arrivals over max(60 s, 4 x the end-to-end latency the targets allow,
    ``ttft + output x tpot`` with 1 s and 50 ms where not given), at least 200 and at most 3000."""
    e2e_s = (ttft_s_p99_target or 1.0) + mean_output_tokens * (tpot_s_p99_target or 0.05)
    seconds = max(MIN_SECONDS, E2E_MULTIPLE * e2e_s)
    return int(min(MAX_REQUESTS, max(MIN_REQUESTS, math.ceil(seconds * request_rate))))


def plan_capacity(*, request_rate: float, ttft_s_p99_target: float | None = None,
                  tpot_s_p99_target: float | None = None,
                  gpus_max: int = 64, input_len: int | LengthDistribution = 100,
                  output_len: int | LengthDistribution = 600, num_prompts: int | None = None,
                  burstiness: float = 1.0, seed: int = 0, workers: int | None = None,
                  progress: Callable[[int, int], None] | None = None, options: ScenarioOptions | None = None,
                  confidence: float | None = None, interval_level: float = DEFAULT_LEVEL,
                  pool: Any = None, **scenario_options: Any) -> PlanResult:
    """Search GPU counts and layouts for the fewest GPUs that serve ``request_rate`` requests/s (module doc).

    ``options`` (or ``scenario_options``, the same fields as keywords: model, hardware, dtype, quantization,
    engine arguments, vllm_version, kv_offload, ...) say what to plan for; worker processes rebuild the
    scenario from them. Without options the entry point is ``serve`` (vLLM's server defaults); the workload
    fields are replaced by the mean lengths and the request count planned here. ``workers``: processes
    (default: the machine's cores), or ``pool``: an executor to share (``perfmodel.pool.executor``; several
    plans at once, ``perfmodel.analysis.plan_compare``). ``progress(done, total)`` is called as simulations finish.

    ``confidence`` (e.g. 0.9): accept a layout only when the slow end of its throughput interval at that level
    still carries the load (the layout simulated again with every step time divided by low / point of its
    output tokens/s) and the high ends of its p99 TTFT and TPOT intervals meet the targets; the result also
    says how many GPUs the point estimate alone would have chosen (``point_estimate_gpus``). Every simulated
    trial carries its ``interval`` at ``confidence`` (else ``interval_level``).
    """
    from perfmodel.analysis.simulate import as_length_distribution

    _check_targets(request_rate, ttft_s_p99_target, tpot_s_p99_target, gpus_max, confidence, num_prompts)
    inputs = as_length_distribution(input_len, "--input-len")
    outputs = as_length_distribution(output_len, "--output-len")
    options, scenario = _planned_scenario(options, scenario_options, inputs, outputs, seed, num_prompts,
                                          request_rate, ttft_s_p99_target, tpot_s_p99_target)
    n = options.num_prompts
    cluster = scenario.cluster
    counts = gpu_counts(min(gpus_max, cluster.num_nodes * cluster.gpus_per_node), cluster.gpus_per_node,
                        cluster.max_nodes_per_job)
    if not counts:
        raise UserError(f"--gpus-max {gpus_max} leaves no GPU count to try")
    def task(layout: Layout, analytical_rps: float) -> TrialTask:
        return TrialTask(options=options, tp=layout.tp, pp=layout.pp, dp=layout.dp,
                     analytical_requests_per_second=analytical_rps, input_len=inputs,
                     output_len=outputs, num_prompts=n, request_rate=request_rate, burstiness=burstiness,
                     seed=seed, ttft_s_p99_target=ttft_s_p99_target, tpot_s_p99_target=tpot_s_p99_target,
                     confidence=confidence, interval_level=confidence or interval_level)

    def screen(count: int) -> tuple[list[Trial], list[TrialTask]]:
        pruned, tasks = [], []
        for layout in _layouts(scenario, count):
            trial, analytical_rps = _screen(scenario, layout, request_rate, ttft_s_p99_target, tpot_s_p99_target)
            (pruned.append(trial) if trial else tasks.append(task(layout, analytical_rps)))
        return pruned, tasks

    trials: list[Trial] = []
    best: Trial | None = None
    with contextlib.nullcontext(pool) if pool is not None else executor(workers) as running:
        best = _search(running, counts, screen, trials, progress)
    point_gpus = min((t.gpus for t in trials if t.point_status == "accepted"), default=None)
    targets = _targets_text(ttft_s_p99_target, tpot_s_p99_target)
    message = _answer(best, request_rate, targets, confidence, point_gpus, counts[-1], gpus_max)
    return PlanResult(request_rate=request_rate, ttft_s_p99_target=ttft_s_p99_target,
                      tpot_s_p99_target=tpot_s_p99_target, gpus_max=gpus_max, num_requests=n, best=best,
                      trials=tuple(trials), message=message, engine=scenario.engine, confidence=confidence,
                      point_estimate_gpus=point_gpus if confidence is not None else None, notes=scenario.notes)


def _planned_scenario(options: ScenarioOptions | None, scenario_options: dict, inputs: LengthDistribution,
                      outputs: LengthDistribution, seed: int, num_prompts: int | None, request_rate: float,
                      ttft_s_p99_target: float | None, tpot_s_p99_target: float | None):
    """The options and scenario every layout is planned with: the workload's mean lengths (drawn as the simulation
    draws them) and the request count for a steady state; the serve entry point unless the options say otherwise."""
    if options is None:
        try:
            options = ScenarioOptions(**{"entry_point": "serve", **scenario_options})
        except TypeError as exc:
            raise UserError(f"unknown scenario option: {exc}") from None
    rng = np.random.default_rng(seed)
    mean_in = max(1, round(float(np.mean(inputs.sample(MAX_REQUESTS, rng)))))
    mean_out = max(1, round(float(np.mean(outputs.sample(MAX_REQUESTS, rng)))))
    n = num_prompts or num_requests_for(request_rate, mean_out, ttft_s_p99_target, tpot_s_p99_target)
    options = options.replace(input_len=mean_in, output_len=mean_out, num_prompts=n)
    scenario = Scenario.from_options(options)
    scenario.check_lengths(mean_in, mean_out, what="mean --input-len + --output-len")
    return options, scenario


def _check_targets(request_rate: float, ttft_s_p99_target: float | None, tpot_s_p99_target: float | None, gpus_max: int,
                   confidence: float | None, num_prompts: int | None) -> None:
    if not 0 < request_rate < math.inf:
        raise UserError(f"--request-rate must be a positive number of requests/s, got {request_rate}")
    for flag, value in (("--ttft-p99", ttft_s_p99_target), ("--tpot-p99", tpot_s_p99_target)):
        if value is not None and not value > 0:
            raise UserError(f"{flag} must be positive seconds, got {value}")
    if gpus_max < 1:
        raise UserError(f"--gpus-max must be at least 1, got {gpus_max}")
    if confidence is not None and not 0 < confidence < 1:
        raise UserError(f"--confidence must be between 0 and 1 (e.g. 0.9), got {confidence}")
    if num_prompts is not None and num_prompts < 10:
        raise UserError(f"--num-prompts must be at least 10 to judge a steady state, got {num_prompts}")


def _answer(best: Trial | None, request_rate: float, targets: str, confidence: float | None,
            point_gpus: int | None, limit: int, gpus_max: int) -> str:
    """The one-sentence answer: the GPUs and layout, or why none up to ``limit`` GPUs will do."""
    if best is None:
        why = "the hardware's GPUs or its per-job node limit" if limit < gpus_max else "--gpus-max"
        return (f"no layout of up to {limit} GPUs ({why}) sustains {request_rate:g} req/s{targets}; see the trials "
                "for the closest, or relax the targets")
    message = (f"{best.gpus} GPUs: {best.layout} sustains {request_rate:g} req/s{targets} "
               f"({best.gpu_hours_per_million_output_tokens:.3g} GPU-hours per million output tokens)")
    if confidence is not None:
        message += (f" with {confidence:.0%} confidence (low throughput, high p99 latencies); the point "
                    f"estimate alone would have chosen {point_gpus} GPUs")
    return message


def _targets_text(ttft: float | None, tpot: float | None) -> str:
    parts = [f"p99 TTFT <= {ttft:g} s" if ttft else "", f"p99 TPOT <= {tpot * 1e3:g} ms" if tpot else ""]
    parts = [p for p in parts if p]
    return f" with {' and '.join(parts)}" if parts else ""


def _layouts(scenario, count: int) -> list[Layout]:
    model = scenario.model
    layouts = enumerate_layouts(count, num_attention_heads=model.num_attention_heads, num_kv_heads=model.num_kv_heads,
                                num_layers=model.num_layers, gpus_per_node=scenario.cluster.gpus_per_node,
                                    tp_across_nodes=scenario.tp_across_nodes)
    if scenario.kv_offload:
        layouts = [lay for lay in layouts if lay.pp >= 2]
    return layouts


def _screen(scenario, layout: Layout, rate: float, ttft: float | None,
            tpot: float | None) -> tuple[Trial | None, float]:
    """(a pruned Trial when the closed form shows the layout cannot meet the target, else None; the closed
    form's maximum requests/s)."""
    from perfmodel.analysis.predict import predict_layout

    saturating = dataclasses.replace(scenario.workload, num_prompts=4 * layout.dp * scenario.engine.max_num_seqs)
    p = predict_layout(scenario.with_(workload=saturating), layout)
    base = dict(gpus=layout.gpus, tp=layout.tp, pp=layout.pp, dp=layout.dp, status="pruned",
                analytical_requests_per_second=p.requests_per_second)
    if not p.fits:
        return Trial(**base, reason=f"does not fit: {p.reason}"), p.requests_per_second
    if p.requests_per_second < PRUNE_FRACTION * rate:
        return (Trial(**base, reason=f"closed-form maximum {p.requests_per_second:.3g} req/s < {rate:g}"),
                p.requests_per_second)
    w, cost = scenario.workload, scenario.step_cost(layout)
    if tpot is not None:
        one = _single_step(decode_context=w.input_len + w.output_len // 2)
        decode_s = float(cost(one)) * layout.pp
        if decode_s > tpot:
            return (Trial(**base, reason=f"one sequence alone decodes a token in {decode_s * 1e3:.3g} ms > "
                                         "TPOT target"), p.requests_per_second)
    if ttft is not None:
        prefill_s = float(cost(_single_step(prefill=w.input_len))) * layout.pp
        if prefill_s > ttft:
            return (Trial(**base, reason=f"one prompt alone prefills in {prefill_s:.3g} s > TTFT target"),
                    p.requests_per_second)
    return None, p.requests_per_second


def _single_step(*, prefill: int = 0, decode_context: int = 0):
    from simulator.batch import BatchStats

    decode = 1 if decode_context else 0
    return BatchStats(num_prefill_tokens=prefill, num_decode_tokens=decode,
                      prefill_attention_pairs=prefill * (prefill + 1) / 2.0, prefill_context_tokens=prefill,
                      decode_context_tokens=decode_context, num_sampled_tokens=1, num_seqs=1)


def _search(pool, counts: list[int], screen, trials: list[Trial], progress) -> Trial | None:
    """Screen counts in order, simulate their survivors (a few counts ahead to keep every worker busy) and
    stop at the first count with an accepted layout. Speculative results of larger counts are dropped."""
    width = getattr(pool, "_max_workers", 1)
    queue: deque[tuple[int, TrialTask]] = deque()
    outstanding: dict[int, int] = {}  # count -> simulations not finished
    results: dict[int, list[Trial]] = {}
    futures: dict[cf.Future, int] = {}
    next_count = 0
    done = total = 0
    for i, count in enumerate(counts):
        while next_count < len(counts) and (next_count <= i or len(queue) + len(futures) < 2 * width):
            c = counts[next_count]
            pruned, tasks = screen(c)
            results[c] = list(pruned)
            outstanding[c] = len(tasks)
            queue.extend((c, t) for t in tasks)
            total += len(tasks)
            next_count += 1
        while outstanding[count] > 0:
            while queue and len(futures) < 2 * width:
                c, t = queue.popleft()
                futures[pool.submit(simulate_trial, t)] = c
            finished, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                c = futures.pop(future)
                results[c].append(future.result())
                outstanding[c] -= 1
                done += 1
                if progress:
                    progress(done, total)
        order = {"accepted": 0, "rejected": 1, "pruned": 2}
        trials.extend(sorted(results[count], key=lambda t: (order[t.status], t.tp, t.pp)))
        accepted = [t for t in results[count] if t.status == "accepted"]
        if accepted:
            for future in futures:
                future.cancel()
            return min(accepted, key=lambda t: (t.e2e_s_p99, t.pp, t.tp))
    return None
