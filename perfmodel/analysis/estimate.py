"""Closed-form throughput of an offline workload of fixed lengths: the fast path that prunes layout searches.

With every request of ``input_len`` prompt and ``output_len`` output tokens arriving at t=0, both schedulers
run in waves: ``b`` requests are admitted, prefilled in chunks of the token budget, decode together until they
all finish at the same step, and the next wave starts. So a replica's elapsed time is

    sum over waves of [ prefill steps of b*input_len tokens + (output_len - 1) decode steps of b sequences ]

with every step costed by the step-cost model at its exact context lengths. The wave size is the smallest of
``max_num_seqs``, the requests, and what the KV cache holds at full length; the waves are greedy
(``b, ..., b, n mod b``), not balanced (``ceil(n / ceil(n / b))`` each).

Why greedy for continuous batching: vLLM V1 admits waiting requests while ``len(running) < max_num_seqs`` and
budget is left (vLLM 0.7.0 vllm/v1/core/scheduler.py Scheduler.schedule) and drops finished ones from
``running`` only after the step (Scheduler.update_from_output), so with equal lengths a full wave's slots all
free in its last step and the next wave starts in the step after: no overlap to add. The engine overlaps
waves only when a wave's prefill spans several budget-sized steps (its requests then finish in staggered
steps); this estimate ignores that, the simulator has it. So the estimate is what the engine reaches, not
the best schedule the limits allow. Consequence (issue 9): the step cost is about convex in the batch (roofline
``max`` of a fixed weight read and per-token work), so greedy waves with a small remainder cost more than
balanced ones, and static batching with a smaller batch (e.g. 129 + 128 for 257 prompts) can beat continuous
batching with ``max_num_seqs`` 256 (256 + 1); the simulator agrees. What holds is: continuous batching is
never slower than static batching with the same batch limit (``max_num_seqs`` = the static batch size).

Static batching differs in what it reserves (padded lengths, a static batch size) and never overlaps waves.

With PP stages a wave is split into ``pp`` micro-batches; a round (every sequence advances one token) takes
``pp`` stage times of a micro-batch, so with fewer sequences than stages the pipeline bubble shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perfmodel.errors import UserError
from simulator.batch import BatchStats


@dataclass(frozen=True, kw_only=True)
class OfflineWorkload:
    """``num_prompts`` requests of ``input_len`` prompt and ``output_len`` output tokens, all at t=0."""

    input_len: int
    output_len: int
    num_prompts: int

    def __post_init__(self) -> None:
        for name in ("input_len", "output_len", "num_prompts"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class ThroughputEstimate:
    """Offline throughput with vLLM's benchmark names; ``tokens_per_second`` counts input plus output."""

    elapsed_s: float  # seconds for all requests on all replicas
    requests_per_second: float
    tokens_per_second: float
    output_tokens_per_second: float
    batch_size: int  # sequences per wave on one replica


def wave_time_s(step_cost, batch_size: int, input_len: int, output_len: int, max_num_batched_tokens: int, *,
                decode_samples: int | None = None) -> float:
    """Seconds for one wave of ``batch_size`` requests on one replica (all pipeline stages). ``decode_samples``:
    cost only that many evenly spaced decode steps, each standing for its share of them (an approximation for
    derivatives, perfmodel.uncertainty.intervals)."""
    if decode_samples is not None and decode_samples < 2:
        raise ValueError("decode_samples must be at least 2 (the first and the last decode step)")
    stages = step_cost.num_stages
    micro = math.ceil(batch_size / stages)  # sequences per micro-batch
    # Prefill: each micro-batch's prompt tokens go through in chunks of the full token budget, as vLLM's
    # scheduler fills it; query-key pairs are shared among chunks in proportion to their tokens.
    prompt_tokens = micro * input_len
    full, rest = divmod(prompt_tokens, max_num_batched_tokens)
    chunks = np.array([max_num_batched_tokens] * full + ([rest] if rest else []), dtype=float)
    steps = len(chunks)
    pairs = micro * input_len * (input_len + 1) / 2.0 * chunks / prompt_tokens
    prefill_batch = BatchStats(
        num_prefill_tokens=chunks, num_decode_tokens=np.zeros(steps), prefill_attention_pairs=pairs,
        prefill_context_tokens=chunks, decode_context_tokens=np.zeros(steps),
        num_sampled_tokens=np.r_[np.zeros(steps - 1), micro],
        num_seqs=np.minimum(micro, np.ceil(chunks / input_len) + 1))
    prefill = step_cost(prefill_batch)
    time_s = float(np.sum(prefill)) * stages
    # V0 with PP: each micro-batch's result returns to the engine before the last stage takes the next one
    # (stage_split_s), so a round through the pipeline takes stages x (stage time + that return)
    split = getattr(step_cost, "stage_split_s", None)
    if split is not None:
        time_s += float(np.sum(split(prefill_batch)[2])) * stages
    if output_len > 1:
        generated = np.arange(1, output_len)
        sampled = bool(decode_samples) and decode_samples < len(generated)
        if sampled:
            generated = generated[np.linspace(0, len(generated) - 1, decode_samples).round().astype(int)]
        n = len(generated)
        decode_batch = BatchStats(
            num_prefill_tokens=np.zeros(n), num_decode_tokens=np.full(n, micro), prefill_attention_pairs=np.zeros(n),
            prefill_context_tokens=np.zeros(n), decode_context_tokens=micro * (input_len + generated),
            num_sampled_tokens=np.full(n, micro), num_seqs=np.full(n, micro))
        decode_s = float(np.sum(step_cost(decode_batch)))
        if split is not None:
            decode_s += float(np.sum(split(decode_batch)[2]))
        time_s += (decode_s * (output_len - 1) / n if sampled else decode_s) * stages
    return time_s


def offline_throughput(step_cost, workload: OfflineWorkload, *, batch_size: int, num_replicas: int,
                       max_num_batched_tokens: int) -> ThroughputEstimate:
    """Throughput of ``num_replicas`` replicas sharing the prompts evenly, ``batch_size`` sequences a wave."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    per_replica = math.ceil(workload.num_prompts / num_replicas)
    full_waves, rest = divmod(per_replica, batch_size)
    args = (workload.input_len, workload.output_len, max_num_batched_tokens)
    elapsed = full_waves * wave_time_s(step_cost, batch_size, *args)
    if rest:
        elapsed += wave_time_s(step_cost, rest, *args)
    n = workload.num_prompts
    return ThroughputEstimate(
        elapsed_s=elapsed, requests_per_second=n / elapsed,
        tokens_per_second=n * (workload.input_len + workload.output_len) / elapsed,
        output_tokens_per_second=n * workload.output_len / elapsed, batch_size=batch_size)
