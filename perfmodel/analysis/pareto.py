"""The throughput-interactivity frontier of N GPUs: output tokens/s per GPU against tokens/s per user, over
layouts x ``max_num_seqs``, each point a closed-loop simulation (``perfmodel pareto``).

A point is one layout (TP x PP x DP = N) whose engine runs with ``max_num_seqs = s`` and a client that keeps
``s`` requests outstanding per replica (closed loop, as ``vllm bench serve --max-concurrency s*DP``): the
engine is full, and more concurrency would only queue. The replicas are identical and a closed loop keeps each
as busy as the others, so one replica is simulated and the whole layout's throughput is DP times its own:

    output tokens/s per GPU  = replica output tokens/s / (TP x PP)           (the operator's cost)
    output tokens/s per user = 1 / median TPOT                                (the decode speed a user sees)

TPOT as vLLM's benchmark defines it (excludes the first token). A point is on the frontier when no other point
is at least as good on both axes and better on one (aiconfigurator and Vidur draw the same frontier).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perfmodel.errors import UserError
from perfmodel.layout import Layout

if TYPE_CHECKING:
    from perfmodel.scenario import Scenario

DEFAULT_MAX_NUM_SEQS = (1, 4, 16, 64, 256)
REQUESTS_PER_SLOT = 3  # closed-loop requests per concurrent slot: every slot is refilled twice
MAX_SIMULATED_STEPS = 1_000_000  # engine steps one pareto may simulate (~60 us a step measured: about a minute)


@dataclass(frozen=True, kw_only=True)
class ParetoPoint:
    """One (layout, max_num_seqs) point; throughputs in tokens/s, latencies in seconds."""

    tp: int
    pp: int
    dp: int
    max_num_seqs: int
    concurrency: int  # requests outstanding over the whole layout (max_num_seqs x DP)
    output_tokens_per_second: float  # the whole layout
    output_tokens_per_second_per_gpu: float
    output_tokens_per_second_per_user: float
    ttft_s_median: float
    tpot_s_median: float
    on_frontier: bool = False

    @property
    def layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp)

    @property
    def label(self) -> str:
        return f"TP{self.tp} PP{self.pp} DP{self.dp}, {self.max_num_seqs} seqs"


def closed_loop_point(scenario: "Scenario", layout: Layout, max_num_seqs: int, *, input_len: int,
                      output_len: int, seed: int = 0) -> ParetoPoint | None:
    """One replica of ``layout`` at ``max_num_seqs``, full (closed loop); None when it does not fit."""
    from perfmodel.analysis.simulate import build_requests

    replica = dataclasses.replace(layout, dp=1)
    sized = scenario.with_engine(max_num_seqs=max_num_seqs)  # re-resolved: V0's graph sizes follow max_num_seqs
    if not sized.memory(replica).fits:
        return None
    requests = build_requests(input_len=input_len, output_len=output_len,
                              num_prompts=max(8, REQUESTS_PER_SLOT * max_num_seqs), seed=seed,
                              max_model_len=scenario.max_model_len)
    try:
        m = sized.simulate(replica, requests, max_concurrency=max_num_seqs).metrics
    except UserError:  # a request larger than this replica's KV cache
        return None
    total = m.output_tokens_per_second * layout.dp
    per_user = 1.0 / m.tpot_s_median if m.tpot_s_median > 0 else math.inf
    return ParetoPoint(tp=layout.tp, pp=layout.pp, dp=layout.dp, max_num_seqs=max_num_seqs,
                       concurrency=max_num_seqs * layout.dp, output_tokens_per_second=total,
                       output_tokens_per_second_per_gpu=total / layout.gpus,
                       output_tokens_per_second_per_user=per_user, ttft_s_median=m.ttft_s_median,
                       tpot_s_median=m.tpot_s_median)


def mark_frontier(points: list[ParetoPoint]) -> list[ParetoPoint]:
    """The points with ``on_frontier`` set, fastest per user first (ties: more per GPU first)."""
    ordered = sorted(points, key=lambda p: (-p.output_tokens_per_second_per_user,
                                            -p.output_tokens_per_second_per_gpu))
    best_per_gpu = -math.inf
    out = []
    for p in ordered:  # per-user speed falls along the list: a point is kept when it beats every faster one
        on = p.output_tokens_per_second_per_gpu > best_per_gpu
        best_per_gpu = max(best_per_gpu, p.output_tokens_per_second_per_gpu)
        out.append(dataclasses.replace(p, on_frontier=on))
    return out


def pareto_points(scenario: "Scenario", num_gpus: int, *, max_num_seqs: tuple[int, ...] = DEFAULT_MAX_NUM_SEQS,
                  input_len: int = 1000, output_len: int = 200, seed: int = 0) -> list[ParetoPoint]:
    """Every layout of ``num_gpus`` x every ``max_num_seqs`` that fits, frontier marked, fastest per user first."""
    from perfmodel.analysis.predict import candidate_layouts

    if not max_num_seqs or any(s < 1 for s in max_num_seqs):
        raise UserError(f"--max-num-seqs-list needs positive sizes, got {list(max_num_seqs)}")
    for name, value in (("--input-len", input_len), ("--output-len", output_len)):
        if value < 1:
            raise UserError(f"{name} must be at least 1, got {value}")
    if input_len + output_len > scenario.max_model_len:  # vLLM refuses such a request; never trim it silently
        raise UserError(f"--input-len {input_len:,} + --output-len {output_len:,} exceed --max-model-len "
                        f"{scenario.max_model_len:,}")
    layouts = candidate_layouts(scenario, num_gpus)
    sizes = sorted(set(max_num_seqs))
    # a closed-loop point runs ~REQUESTS_PER_SLOT generations of its batch: about that many x output_len steps
    steps = len(layouts) * len(sizes) * REQUESTS_PER_SLOT * output_len
    if steps > MAX_SIMULATED_STEPS:
        raise UserError(f"{len(layouts)} layouts x {len(sizes)} sizes x {REQUESTS_PER_SLOT} x --output-len "
                        f"{output_len:,} = {steps:,} engine steps to simulate; the limit is {MAX_SIMULATED_STEPS:,} "
                        "(fewer --max-num-seqs-list sizes, pin fewer GPUs, or a shorter --output-len)")
    points = []
    for layout in layouts:
        for seqs in sizes:
            point = closed_loop_point(scenario, layout, seqs, input_len=input_len, output_len=output_len,
                                      seed=seed)
            if point is not None:
                points.append(point)
    if not points:
        raise UserError(f"no layout of {num_gpus} GPUs fits {scenario.model.name} on "
                        f"{scenario.cluster.gpu.display_name}; try --quantization or a smaller --max-model-len")
    return mark_frontier(points)
