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

if TYPE_CHECKING:  # pandas is imported where it is used: it costs ~0.4 s at start-up
    import pandas as pd


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """What a simulation returns.

    metrics: aggregate metrics (vLLM benchmark definitions, seconds).
    requests: per-request times and counts, in the order of the input requests.
    itl_gap_s, itl_count: every inter-token gap, as (gap, number of tokens with it) pairs.
    timeline: one row per engine step (replica, start_s, end_s, stage_time_s, the BatchStats fields,
        num_running, num_waiting, kv_usage), only with `record_timeline=True`.
    steps: the timeline's BatchStats with array fields, in timeline order (re-cost them with another StepCost:
        an offline run's schedule does not depend on step times), only with `record_timeline=True`.
    """

    metrics: Metrics
    requests: RequestResults
    itl_gap_s: np.ndarray
    itl_count: np.ndarray
    timeline: pd.DataFrame | None = None
    steps: BatchStats | None = None


def _validate(table: RequestTable, engine: EngineConfig, num_replicas: int) -> None:
    if len(table) == 0:
        raise ValueError("no requests to simulate")
    if not isinstance(num_replicas, int) or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive integer, got {num_replicas!r}")
    longest = max(table.finish_kv_tokens)
    if longest > engine.kv_capacity_tokens:
        raise ValueError(f"a request needs {longest} KV tokens (prompt + output - 1) but a replica holds "
                         f"{engine.kv_capacity_tokens} ({engine.num_kv_blocks} blocks of {engine.block_size}); "
                         "shorten the requests or give more KV blocks")
    if engine.batching == "continuous" and not engine.enable_chunked_prefill:
        prompt = max(table.num_prompt_tokens)
        if prompt > engine.max_num_batched_tokens:
            raise ValueError(f"a prompt of {prompt} tokens exceeds max_num_batched_tokens "
                             f"({engine.max_num_batched_tokens}) with chunked prefill off; raise the budget "
                             "or enable chunked prefill")


def simulate(requests: Sequence[Request], engine: EngineConfig, step_cost: StepCost, *, num_replicas: int = 1,
             router: str = "round_robin", max_concurrency: int | None = None, seed: int = 0,
             record_timeline: bool = False, macro_steps: bool = True, max_macro_steps: int = 4096,
             request_latency_s: float = 0.0, token_delivery_s: float = 0.0) -> SimResult:
    """Simulate `requests` on `num_replicas` identical engines (DP) behind `router`.

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
    """
    if max_macro_steps < 1:
        raise ValueError("max_macro_steps must be >= 1")
    if not 0.0 <= token_delivery_s < float("inf"):
        raise ValueError(f"token_delivery_s must be finite and >= 0, got {token_delivery_s}")
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
