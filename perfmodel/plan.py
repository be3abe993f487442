"""Capacity planning: the fewest GPUs (and their layout) that serve a request rate within p99 latency targets.

    >>> from perfmodel.plan import plan_capacity
    >>> result = plan_capacity(request_rate=20, ttft_p99_s=2.0, tpot_p99_s=0.1, model="llama-3.1-70b",
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
3. a layout is accepted when it sustains the rate and meets the targets:
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
import dataclasses
import functools
import math
import multiprocessing
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, TextIO

import numpy as np

from perfmodel.engine import EngineArgs
from perfmodel.errors import UserError
from perfmodel.layout import Layout, enumerate_layouts
from perfmodel.scenario import Scenario, ScenarioOptions
from simulator.workload import LengthDistribution

PRUNE_FRACTION = 0.9  # the closed form may be a little pessimistic: simulate what comes within 10% of the rate
SUSTAIN_FRACTION = 0.95
QUEUE_GROWTH_S, QUEUE_GROWTH_FRACTION = 0.5, 0.5
MIN_REQUESTS, MIN_SECONDS, E2E_MULTIPLE, MAX_REQUESTS = 200, 60.0, 4.0, 3000


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

    @property
    def layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp)


@dataclass(frozen=True, kw_only=True)
class PlanResult:
    """The answer (``best``: None when no count up to ``gpus_max`` meets the target) and every trial."""

    request_rate: float
    ttft_p99_s: float | None
    tpot_p99_s: float | None
    gpus_max: int
    num_requests: int
    best: Trial | None
    trials: tuple[Trial, ...]
    message: str
    engine: EngineArgs  # the engine every layout was simulated with, as resolved (vLLM's defaults filled in)

    @property
    def gpus(self) -> int | None:
        return self.best.gpus if self.best else None


@dataclass(frozen=True, kw_only=True)
class _Task:
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
    ttft_p99_s: float | None
    tpot_p99_s: float | None


def gpu_counts(gpus_max: int, gpus_per_node: int, max_nodes_per_job: int | None) -> list[int]:
    """1, 2, 4, ... and multiples of a node, up to ``gpus_max`` and the per-job node limit."""
    limit = gpus_max if max_nodes_per_job is None else min(gpus_max, max_nodes_per_job * gpus_per_node)
    counts = {2**k for k in range(32) if 2**k <= limit} | set(range(gpus_per_node, limit + 1, gpus_per_node))
    return sorted(counts)


def num_requests_for(request_rate: float, mean_output_tokens: float = 0.0, ttft_p99_s: float | None = None,
                     tpot_p99_s: float | None = None) -> int:
    """Requests for a steady state: arrivals over max(60 s, 4 x the end-to-end latency the targets allow,
    ``ttft + output x tpot`` with 1 s and 50 ms where not given), at least 200 and at most 3000."""
    e2e_s = (ttft_p99_s or 1.0) + mean_output_tokens * (tpot_p99_s or 0.05)
    seconds = max(MIN_SECONDS, E2E_MULTIPLE * e2e_s)
    return int(min(MAX_REQUESTS, max(MIN_REQUESTS, math.ceil(seconds * request_rate))))


def plan_capacity(*, request_rate: float, ttft_p99_s: float | None = None, tpot_p99_s: float | None = None,
                  gpus_max: int = 64, input_len: int | LengthDistribution = 100,
                  output_len: int | LengthDistribution = 600, num_prompts: int | None = None,
                  burstiness: float = 1.0, seed: int = 0, workers: int | None = None,
                  progress: Callable[[int, int], None] | None = None, options: ScenarioOptions | None = None,
                  **scenario_options: Any) -> PlanResult:
    """Search GPU counts and layouts for the fewest GPUs that serve ``request_rate`` requests/s (module doc).

    ``options`` (or ``scenario_options``, the same fields as keywords: model, hardware, dtype, quantization,
    engine arguments, vllm_version, kv_offload, ...) say what to plan for; worker processes rebuild the
    scenario from them. Without options the entry point is ``serve`` (vLLM's server defaults); the workload
    fields are replaced by the mean lengths and the request count planned here. ``workers``: processes
    (default: the machine's cores). ``progress(done, total)`` is called as simulations finish.
    """
    from perfmodel.simulate import as_length_distribution

    if not 0 < request_rate < math.inf:
        raise UserError(f"--request-rate must be a positive number of requests/s, got {request_rate}")
    for flag, value in (("--ttft-p99", ttft_p99_s), ("--tpot-p99", tpot_p99_s)):
        if value is not None and not value > 0:
            raise UserError(f"{flag} must be positive seconds, got {value}")
    if gpus_max < 1:
        raise UserError(f"--gpus-max must be at least 1, got {gpus_max}")
    if num_prompts is not None and num_prompts < 10:
        raise UserError(f"--num-prompts must be at least 10 to judge a steady state, got {num_prompts}")
    if options is None:
        try:
            options = ScenarioOptions(**{"entry_point": "serve", **scenario_options})
        except TypeError as exc:
            raise UserError(f"unknown scenario option: {exc}") from None
    inputs = as_length_distribution(input_len, "--input-len")
    outputs = as_length_distribution(output_len, "--output-len")
    rng = np.random.default_rng(seed)  # the means the closed form uses, from lengths as the simulation draws them
    mean_in = max(1, round(float(np.mean(inputs.sample(MAX_REQUESTS, rng)))))
    mean_out = max(1, round(float(np.mean(outputs.sample(MAX_REQUESTS, rng)))))
    n = num_prompts or num_requests_for(request_rate, mean_out, ttft_p99_s, tpot_p99_s)
    options = options.replace(input_len=mean_in, output_len=mean_out, num_prompts=n)
    scenario = Scenario.from_options(options)
    scenario.check_lengths(mean_in, mean_out, what="mean --input-len + --output-len")
    cluster = scenario.cluster
    counts = gpu_counts(min(gpus_max, cluster.num_nodes * cluster.gpus_per_node), cluster.gpus_per_node,
                        cluster.max_nodes_per_job)
    if not counts:
        raise UserError(f"--gpus-max {gpus_max} leaves no GPU count to try")
    def task(layout: Layout, analytical_rps: float) -> _Task:
        return _Task(options=options, tp=layout.tp, pp=layout.pp, dp=layout.dp,
                     analytical_requests_per_second=analytical_rps, input_len=inputs,
                     output_len=outputs, num_prompts=n, request_rate=request_rate, burstiness=burstiness,
                     seed=seed, ttft_p99_s=ttft_p99_s, tpot_p99_s=tpot_p99_s)

    def screen(count: int) -> tuple[list[Trial], list[_Task]]:
        pruned, tasks = [], []
        for layout in _layouts(scenario, count):
            trial, analytical_rps = _screen(scenario, layout, request_rate, ttft_p99_s, tpot_p99_s)
            (pruned.append(trial) if trial else tasks.append(task(layout, analytical_rps)))
        return pruned, tasks

    trials: list[Trial] = []
    best: Trial | None = None
    with _executor(workers) as pool:
        best = _search(pool, counts, screen, trials, progress)
    if best is not None:
        message = (f"{best.gpus} GPUs: {best.layout} sustains {request_rate:g} req/s"
                   f"{_targets_text(ttft_p99_s, tpot_p99_s)} ({best.gpu_hours_per_million_output_tokens:.3g} "
                   "GPU-hours per million output tokens)")
    else:
        limit = counts[-1]
        why = "the hardware's GPUs or its per-job node limit" if limit < gpus_max else "--gpus-max"
        message = (f"no layout of up to {limit} GPUs ({why}) sustains {request_rate:g} req/s"
                   f"{_targets_text(ttft_p99_s, tpot_p99_s)}; see the trials for the closest, or relax the targets")
    return PlanResult(request_rate=request_rate, ttft_p99_s=ttft_p99_s, tpot_p99_s=tpot_p99_s, gpus_max=gpus_max,
                      num_requests=n, best=best, trials=tuple(trials), message=message, engine=scenario.engine)


def _targets_text(ttft: float | None, tpot: float | None) -> str:
    parts = [f"p99 TTFT <= {ttft:g} s" if ttft else "", f"p99 TPOT <= {tpot * 1e3:g} ms" if tpot else ""]
    parts = [p for p in parts if p]
    return f" with {' and '.join(parts)}" if parts else ""


def _layouts(scenario, count: int) -> list[Layout]:
    model = scenario.model
    layouts = enumerate_layouts(count, num_attention_heads=model.num_attention_heads, num_kv_heads=model.num_kv_heads,
                                num_layers=model.num_layers, gpus_per_node=scenario.cluster.gpus_per_node)
    if scenario.kv_offload:
        layouts = [lay for lay in layouts if lay.pp >= 2]
    return layouts


def _screen(scenario, layout: Layout, rate: float, ttft: float | None,
            tpot: float | None) -> tuple[Trial | None, float]:
    """(a pruned Trial when the closed form shows the layout cannot meet the target, else None; the closed
    form's maximum requests/s)."""
    from perfmodel.predict import predict_layout

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
    queue: deque[tuple[int, _Task]] = deque()
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
                futures[pool.submit(_simulate_trial, t)] = c
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


@functools.lru_cache(maxsize=8)
def _scenario(options: ScenarioOptions) -> Scenario:
    return Scenario.from_options(options)


def _simulate_trial(task: _Task) -> Trial:
    """Simulate one layout at the planned load and judge it (runs in a worker process)."""
    from perfmodel.simulate import build_requests

    scenario = _scenario(task.options)
    layout = Layout(tp=task.tp, pp=task.pp, dp=task.dp)
    requests = build_requests(input_len=task.input_len, output_len=task.output_len, num_prompts=task.num_prompts,
                              request_rate=task.request_rate, burstiness=task.burstiness, seed=task.seed,
                              max_model_len=scenario.max_model_len)
    base = dict(gpus=layout.gpus, tp=layout.tp, pp=layout.pp, dp=layout.dp,
                analytical_requests_per_second=task.analytical_requests_per_second)
    try:
        result = scenario.simulate(layout, requests, seed=task.seed)
    except UserError as exc:
        return Trial(**base, status="rejected", reason=str(exc))
    return _judge(result, task, base)


def _judge(result, task: _Task, base: dict) -> Trial:
    r, m = result.requests, result.metrics
    n = len(r)
    start_s, end_s = float(np.min(r.arrival_s)), float(np.max(r.arrival_s))
    # Judge the steady part: from half the arrival window, later when latencies are long (the batch is still
    # filling for about one end-to-end latency), at most the last quarter.
    window_s = end_s - start_s
    half = start_s + min(max(window_s / 2, 1.5 * float(np.median(r.e2e_s))), 0.75 * window_s)
    delivered = _tokens_between(r, half, end_s)
    # What the arrivals asked for in that window: the tokens of the requests that arrived one typical emission
    # lag earlier (median of (first token + finish) / 2 - sent), so that Poisson noise largely cancels.
    lag = float(np.median((r.first_token_s + r.finish_s) / 2 - r.sent_s))
    lo, hi = max(start_s, half - lag), max(start_s, end_s - lag)
    asked = (r.arrival_s >= lo) & (r.arrival_s < hi)
    offered_tps = float(np.sum(r.num_output_tokens[asked])) / (hi - lo) if hi > lo and asked.any() else math.nan
    if not offered_tps > 0:  # too few requests to tell: the whole window's average
        offered_tps = float(np.sum(r.num_output_tokens)) / (end_s - start_s)
    ratio = delivered / (end_s - half) / offered_tps
    achieved = task.request_rate * ratio
    order = np.argsort(r.arrival_s, kind="stable")
    ttft_q2 = float(np.mean(r.ttft_s[order[n // 4:n // 2]]))
    ttft_q4 = float(np.mean(r.ttft_s[order[(3 * n) // 4:]]))
    out_tps = min(ratio, 1.0) * offered_tps
    reasons = []
    if ratio < SUSTAIN_FRACTION:
        reasons.append(f"delivers {achieved:.3g} req/s < {SUSTAIN_FRACTION:g} x {task.request_rate:g}")
    if ttft_q4 - ttft_q2 > max(QUEUE_GROWTH_S, QUEUE_GROWTH_FRACTION * ttft_q2):
        reasons.append(f"queue grows (mean TTFT {ttft_q2:.3g} s -> {ttft_q4:.3g} s from 2nd to 4th quarter)")
    if task.ttft_p99_s is not None and m.ttft_s_p99 > task.ttft_p99_s:
        reasons.append(f"p99 TTFT {m.ttft_s_p99:.3g} s > {task.ttft_p99_s:g}")
    if task.tpot_p99_s is not None and m.tpot_s_p99 > task.tpot_p99_s:
        reasons.append(f"p99 TPOT {m.tpot_s_p99 * 1e3:.3g} ms > {task.tpot_p99_s * 1e3:g}")
    return Trial(**base, status="rejected" if reasons else "accepted", reason="; ".join(reasons),
                 achieved_requests_per_second=achieved, ttft_s_p99=m.ttft_s_p99, tpot_s_p99=m.tpot_s_p99,
                 e2e_s_p99=m.e2e_s_p99, latency_growth=ttft_q4 / ttft_q2 if ttft_q2 > 0 else math.nan,
                 output_tokens_per_second=out_tps,
                 gpu_hours_per_million_output_tokens=base["gpus"] / 3600 / (out_tps / 1e6))


def _tokens_between(r, a_s: float, b_s: float) -> float:
    """Output tokens sampled in [a_s, b_s): each request's first token at ``first_token_s``, the others spread
    evenly up to ``finish_s`` (the per-request results keep no per-token times)."""
    first, finish = r.first_token_s, r.finish_s
    rest = (r.num_output_tokens - 1).astype(float)
    span = finish - first
    overlap = np.clip(np.minimum(finish, b_s) - np.maximum(first, a_s), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(span > 0, rest * overlap / span, np.where((finish >= a_s) & (finish < b_s), rest, 0.0))
    return float(np.sum((first >= a_s) & (first < b_s)) + np.sum(spread))


# -- processes and progress ----------------------------------------------------------------------------------
class _Inline:
    """The executor interface, run in this process (one worker, or where processes are not wanted)."""

    _max_workers = 1

    def submit(self, fn, *args) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001  (re-raised by future.result())
            future.set_exception(exc)
        return future

    def __enter__(self) -> "_Inline":
        return self

    def __exit__(self, *exc) -> None:
        return None


def _executor(workers: int | None):
    workers = workers or os.cpu_count() or 1
    if not 1 <= workers <= 4 * (os.cpu_count() or 1):
        raise UserError(f"--workers must be from 1 to {4 * (os.cpu_count() or 1)} (4 per core), got {workers}")
    if workers == 1:
        return _Inline()
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=context)


class Progress:
    """``[####    ] k/N`` redrawn on a TTY; otherwise a line every tenth of the work. Quiet for short runs."""

    def __init__(self, stream: TextIO | None = None, *, label: str = "simulations", delay_s: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.delay_s = delay_s
        self.start = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown = False
        self._last_line = -1

    def __call__(self, done: int, total: int) -> None:
        if time.monotonic() - self.start < self.delay_s or total <= 0:
            return
        if self.tty:
            width = 30
            filled = round(width * done / total)
            self.stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total} {self.label}")
            self.stream.flush()
            self.shown = True
        else:
            step = max(1, total // 10)
            if done // step != self._last_line or done == total:
                self._last_line = done // step
                self.stream.write(f"{done}/{total} {self.label}\n")
                self.stream.flush()

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
