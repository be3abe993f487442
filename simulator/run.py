"""The entry point: `simulate(requests, engine, step_cost, ...) -> SimResult`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import simpy

from simulator.batch import BatchStats, StepCost
from simulator.cluster import Client, Router
from simulator.config import EngineConfig
from simulator.engine import Replica
from simulator.metrics import Metrics, compute_metrics
from simulator.request import Request, RequestResults, RequestTable
from simulator.itl import ItlRecorder
from simulator.timeline import StepRecorder
from simulator.collect import MetricsCollector
from simulator.open_loop import run_open_loop
from simulator.scheduler_v0 import check_v0_fits
from simulator.schedulers import SCHEDULERS, scheduler_key
from simulator.stream import RequestStream

if TYPE_CHECKING:  # pandas is imported where it is used: it costs ~0.4 s at start-up
    import pandas as pd


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """What a simulation returns.

    metrics: aggregate metrics (vLLM benchmark definitions, seconds).
    requests: per-request times and counts, in the order of the input requests (None with keep_requests=False).
    itl_gap_s, itl_count: every inter-token gap, as (gap, number of tokens with it) pairs (None with
        keep_requests=False, or when there were more than the exact accumulator holds).
    timeline: one row per engine step (replica, start_s, end_s, stage_time_s, the BatchStats fields,
        num_running, num_waiting, kv_usage), only with `record_timeline=True`.
    steps: the timeline's BatchStats with array fields, in timeline order (re-cost them with another StepCost:
        an offline run's schedule does not depend on step times), only with `record_timeline=True`.
    """

    metrics: Metrics
    requests: RequestResults | None
    itl_gap_s: np.ndarray | None
    itl_count: np.ndarray | None
    timeline: pd.DataFrame | None = None
    steps: BatchStats | None = None


def _check_limits(longest_kv_tokens: int, longest_prompt_tokens: int, engine: EngineConfig) -> None:
    """Requests every replica can hold: the KV of the longest, and (chunked prefill off) the longest prompt."""
    if longest_kv_tokens > engine.kv_capacity_tokens:
        raise ValueError(f"a request needs {longest_kv_tokens} KV tokens (prompt + output - 1) but a replica holds "
                         f"{engine.kv_capacity_tokens} ({engine.num_kv_blocks} blocks of {engine.block_size}); "
                         "shorten the requests or give more KV blocks")
    if engine.batching == "continuous" and not engine.enable_chunked_prefill:
        if longest_prompt_tokens > engine.max_num_batched_tokens:
            raise ValueError(f"a prompt of {longest_prompt_tokens} tokens exceeds max_num_batched_tokens "
                             f"({engine.max_num_batched_tokens}) with chunked prefill off; raise the budget "
                             "or enable chunked prefill")


def _check_common(num_requests: int, num_replicas: int) -> None:
    if num_requests == 0:
        raise ValueError("no requests to simulate")
    if not isinstance(num_replicas, int) or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive integer, got {num_replicas!r}")


def _validate(table: RequestTable, engine: EngineConfig, num_replicas: int) -> None:
    _check_common(len(table), num_replicas)
    _check_limits(max(table.finish_kv_tokens), max(table.num_prompt_tokens), engine)


def _uses_open_loop(engine: EngineConfig, step_cost: StepCost, router: str, max_concurrency: int | None,
                    record_timeline: bool, macro_steps: bool) -> bool:
    """Whether `simulator.open_loop` runs the simulation: arrivals known in advance, one stage, the serial
    strategy, no timeline asked (the SimPy replicas record it)."""
    return (max_concurrency is None and router in ("round_robin", "random") and macro_steps and not record_timeline
            and int(getattr(step_cost, "num_stages", 1)) == 1 and SCHEDULERS[scheduler_key(engine)].strategy == "serial")


def simulate(requests: Sequence[Request] | RequestStream, engine: EngineConfig, step_cost: StepCost, *,
             num_replicas: int = 1, router: str = "round_robin", max_concurrency: int | None = None, seed: int = 0,
             record_timeline: bool = False, macro_steps: bool = True, max_macro_steps: int = 4096,
             request_latency_s: float = 0.0, keep_requests: bool = True, token_delivery_s: float = 0.0) -> SimResult:
    """Simulate `requests` (a list, or a `RequestStream` drawn lazily) on `num_replicas` identical engines (DP)
    behind `router`.

    step_cost: seconds of one pipeline stage for a step (`step_cost.num_stages` stages per replica).
    max_concurrency: at most this many requests outstanding (vLLM benchmark's `--max-concurrency`); with all
        arrivals at 0 this is a closed loop of that many clients.
    seed: seeds the random router (nothing else in the simulator is random; workloads take their own).
    request_latency_s: time from a request's send to its engine's queue (an API server's path), included in
        TTFT and E2E.
    token_delivery_s: an API server's time per token of a step before a request's first or last token of that
        step reaches its client (`simulator.engine.Replica._delivered`), included in TTFT and E2E.
    macro_steps: advance runs of identical decode steps with one cost call (same results; False steps one
        at a time, for checking).
    keep_requests: return per-request results and every inter-token gap; False keeps only the metrics, in
        memory that does not grow with the number of requests (when the open-loop driver runs: see
        `simulator.open_loop`; percentiles then exact up to 2**20 values each, see `simulator.accumulators`).
    """
    if max_macro_steps < 1:
        raise ValueError("max_macro_steps must be >= 1")
    if not 0.0 <= token_delivery_s < float("inf"):
        raise ValueError(f"token_delivery_s must be finite and >= 0, got {token_delivery_s}")
    if _uses_open_loop(engine, step_cost, router, max_concurrency, record_timeline, macro_steps):
        stream = requests if isinstance(requests, RequestStream) else RequestStream.from_requests(requests)
        return _simulate_open_loop(stream, engine, step_cost, num_replicas, router, seed, max_macro_steps,
                                   request_latency_s, keep_requests, token_delivery_s)
    if isinstance(requests, RequestStream):
        requests = requests.to_requests()
    table = RequestTable(requests)
    _validate(table, engine, num_replicas)
    env = simpy.Environment()
    itl = ItlRecorder()
    recorder = StepRecorder(record_timeline, engine.num_kv_blocks)
    client = Client(env, table, Router(router, num_replicas, np.random.default_rng(seed)), max_concurrency,
                    request_latency_s)
    replicas = [Replica(env, r, engine, step_cost, table, itl, recorder, client.on_finish,
                        macro_steps=macro_steps, max_macro_steps=max_macro_steps, token_delivery_s=token_delivery_s)
                for r in range(num_replicas)]
    known = client.arrivals_by_replica()
    if known is not None:
        for replica, arrivals in zip(replicas, known):
            replica.known_arrivals_s = arrivals
    client.start(replicas)
    env.run()
    if client.num_finished != len(table):
        raise RuntimeError(f"simulation stalled: {client.num_finished} of {len(table)} requests finished")

    results = table.results()
    gaps, counts = itl.arrays()
    metrics = compute_metrics(
        results, gaps, counts, num_steps=recorder.num_steps, sum_num_seqs=int(recorder.sum_num_seqs),
        kv_usage_mean=recorder.kv_usage_mean, kv_usage_max=recorder.kv_usage_max,
        num_preemptions=sum(r.num_preemptions for r in replicas),
        padding_tokens=recorder.padding_tokens, computed_tokens=recorder.computed_tokens)
    timeline = steps = None
    if record_timeline:
        timeline = recorder.to_frame()
        steps = StepRecorder.batch_stats(timeline)
    return SimResult(metrics=metrics, requests=results, itl_gap_s=gaps, itl_count=counts, timeline=timeline,
                     steps=steps)


def _simulate_open_loop(stream: RequestStream, engine: EngineConfig, step_cost: StepCost, num_replicas: int,
                        router: str, seed: int, max_macro_steps: int, request_latency_s: float,
                        keep_requests: bool, token_delivery_s: float) -> SimResult:
    _check_common(len(stream), num_replicas)
    if not 0.0 <= request_latency_s < float("inf"):
        raise ValueError(f"request_latency_s must be finite and >= 0, got {request_latency_s}")
    table = RequestTable()
    itl = ItlRecorder()
    recorder = StepRecorder(False, engine.num_kv_blocks)
    collector = MetricsCollector(table, itl, len(stream), keep_requests=keep_requests)
    prefixes: set[int] = set()
    v0_blocks = engine.num_kv_blocks  # pp = 1: V0's one scheduler holds every block

    def check_chunk(chunk) -> None:
        chunk.validate()
        kv = int(np.max(chunk.num_prompt_tokens + chunk.num_output_tokens - 1))
        _check_limits(kv, int(np.max(chunk.num_prompt_tokens)), engine)
        if engine.scheduler == "v0" and engine.batching == "continuous":
            check_v0_fits(kv, engine.block_size, v0_blocks)
        if engine.enable_prefix_caching:
            prefixes.update(np.unique(chunk.num_shared_prefix_tokens).tolist())
            if len(prefixes - {0}) > 1:
                raise ValueError("prefix caching models one shared prefix: give every request with a shared "
                                 "prefix the same num_shared_prefix_tokens")

    replicas = run_open_loop(stream, engine, step_cost, table, itl, recorder, collector,
                             Router(router, num_replicas, np.random.default_rng(seed)), num_replicas=num_replicas,
                             request_latency_s=request_latency_s, max_macro_steps=max_macro_steps,
                             check_chunk=check_chunk, token_delivery_s=token_delivery_s)
    if collector.num_finished != len(stream):
        raise RuntimeError(f"simulation stalled: {collector.num_finished} of {len(stream)} requests finished")
    metrics = collector.metrics(
        num_steps=recorder.num_steps, sum_num_seqs=int(recorder.sum_num_seqs), kv_usage_mean=recorder.kv_usage_mean,
        kv_usage_max=recorder.kv_usage_max, num_preemptions=sum(r.scheduler.num_preemptions for r in replicas),
        padding_tokens=recorder.padding_tokens, computed_tokens=recorder.computed_tokens)
    results = collector.results()
    gaps = counts = None
    if keep_requests and collector.itl_dist.is_exact:
        gaps, counts = collector.itl_dist.arrays()
    return SimResult(metrics=metrics, requests=results, itl_gap_s=gaps, itl_count=counts)
