"""Predict one layout or rank every layout of N GPUs: the Python API under ``perfmodel predict``.

    >>> from perfmodel.analysis.predict import Scenario, predict_all
    >>> scenario = Scenario.build(model="llama-3.1-70b", hardware="taiwania2")  # see perfmodel.scenario
    >>> best = predict_all(scenario, num_gpus=16)[0]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hardware.spec import GIB
from perfmodel.errors import UserError
from perfmodel.analysis.estimate import offline_throughput
from perfmodel.layout import Layout, check_tp, enumerate_layouts
from perfmodel.cost.memory import MemoryPlan
from perfmodel.scenario import Scenario, ScenarioOptions

__all__ = ["LayoutPrediction", "Scenario", "ScenarioOptions", "predict_all", "predict_layout", "predictions_frame"]

if TYPE_CHECKING:
    import pandas as pd

@dataclass(frozen=True, kw_only=True)
class LayoutPrediction:
    """One layout's memory and offline throughput (vLLM benchmark names; seconds, tokens/s)."""

    tp: int
    pp: int
    dp: int
    gpus: int
    fits: bool
    reason: str
    weights_gib_per_gpu: float
    kv_cache_tokens: int  # per replica, as vLLM logs "GPU KV cache size"
    max_concurrency: float  # requests of max_model_len tokens per replica
    batch_size: int  # sequences running together per replica
    requests_per_second: float
    tokens_per_second: float  # input + output
    output_tokens_per_second: float
    elapsed_time: float  # seconds for all prompts (vLLM's benchmark_throughput name, kept in the output)
    method: str  # "analytical" or "simulated"
    calibration: str  # "calibrated", "transferred" or "default"

    @property
    def layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp)


def wave_batch_size(scenario: Scenario, plan: MemoryPlan) -> int:
    """Sequences one replica runs at once: max_num_seqs, the prompts it gets, and what the KV cache holds
    with every sequence at its full length (block-rounded)."""
    w, e = scenario.workload, scenario.engine
    per_request = math.ceil((w.input_len + w.output_len) / e.block_size) * e.block_size
    limit = min(e.max_num_seqs, plan.kv_cache_tokens // per_request)
    if scenario.batching == "static" and scenario.static_batch_size is not None:
        limit = min(limit, scenario.static_batch_size)
    return max(0, limit)


def fit_check(scenario: Scenario, layout: Layout) -> tuple[MemoryPlan, int, bool, str]:
    """The memory plan, the sequences a replica runs at once, and whether (and why not) the layout fits."""
    plan = scenario.memory(layout)
    batch = min(wave_batch_size(scenario, plan), math.ceil(scenario.workload.num_prompts / layout.dp))
    if plan.fits and batch == 0:
        return plan, batch, False, "KV cache cannot hold one request of input_len + output_len tokens"
    return plan, batch, plan.fits, plan.reason


def predict_layout(scenario: Scenario, layout: Layout) -> LayoutPrediction:
    """Memory and analytical offline throughput of one layout."""
    check_tp(layout.tp, scenario.model.num_attention_heads, scenario.model.num_kv_heads)
    plan, batch, fits, reason = fit_check(scenario, layout)
    base = dict(tp=layout.tp, pp=layout.pp, dp=layout.dp, gpus=layout.gpus, weights_gib_per_gpu=plan.weights_bytes / GIB,
                kv_cache_tokens=plan.kv_cache_tokens, max_concurrency=plan.max_concurrency, batch_size=batch,
                calibration=scenario.profile.status_for(scenario.cluster.gpu.name))
    if not fits:
        nan = float("nan")
        return LayoutPrediction(**base, fits=False, reason=reason, requests_per_second=nan, tokens_per_second=nan,
                                output_tokens_per_second=nan, elapsed_time=nan, method="analytical")
    estimate = offline_throughput(scenario.step_cost(layout), scenario.workload, batch_size=batch,
                                  num_replicas=layout.dp, max_num_batched_tokens=scenario.engine.max_num_batched_tokens)
    return LayoutPrediction(**base, fits=True, reason="", requests_per_second=estimate.requests_per_second,
                            tokens_per_second=estimate.tokens_per_second,
                            output_tokens_per_second=estimate.output_tokens_per_second,
                            elapsed_time=estimate.elapsed_s, method="analytical")


def candidate_layouts(scenario: Scenario, num_gpus: int, tp: int | None = None, pp: int | None = None) -> list[Layout]:
    """The layouts to rank: all valid ones for ``num_gpus``, or the one pinned by ``tp``/``pp``."""
    cluster, model = scenario.cluster, scenario.model
    if num_gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {num_gpus}")
    scenario.check_gpus(num_gpus)
    if tp is not None:
        check_tp(tp, model.num_attention_heads, model.num_kv_heads)
        if tp > cluster.gpus_per_node and not scenario.tp_across_nodes:
            raise UserError(f"--tensor-parallel-size {tp} spans nodes of {cluster.gpus_per_node} GPUs; add "
                            f"--tp-across-nodes to allow it")
    if pp is not None and not 1 <= pp <= model.num_layers:
        raise UserError(f"--pipeline-parallel-size must be between 1 and the model's {model.num_layers} layers")
    if tp is not None or pp is not None:
        tp_, pp_ = tp or 1, pp or 1
        if num_gpus % (tp_ * pp_):
            raise UserError(f"TP {tp_} x PP {pp_} = {tp_ * pp_} GPUs does not divide --gpus {num_gpus}")
        return [Layout(tp=tp_, pp=pp_, dp=num_gpus // (tp_ * pp_))]
    layouts = enumerate_layouts(num_gpus, num_attention_heads=model.num_attention_heads,
                                num_kv_heads=model.num_kv_heads, num_layers=model.num_layers,
                                gpus_per_node=cluster.gpus_per_node,
                                tp_across_nodes=scenario.tp_across_nodes)
    if not layouts:
        raise UserError(f"no valid TP x PP x DP layout of {num_gpus} GPUs for {model.name}; try a multiple of "
                        f"{cluster.gpus_per_node} or a power of two")
    return layouts


def rank(predictions: list[LayoutPrediction]) -> list[LayoutPrediction]:
    """Best first: layouts that fit by tokens/s, then the rest by how close they came (KV tokens)."""
    return sorted(predictions, key=lambda p: (not p.fits, -p.tokens_per_second if p.fits else 0.0,
                                              p.weights_gib_per_gpu, p.tp, p.pp))


def predict_all(scenario: Scenario, num_gpus: int, *, tp: int | None = None, pp: int | None = None,
                simulate_top: int = 3) -> list[LayoutPrediction]:
    """Every candidate layout of ``num_gpus`` GPUs, ranked best first.

    The closed form ranks them; then the ``simulate_top`` best that fit are simulated with the scenario's
    offline workload (its prompts all at t=0) and their throughputs replaced by the simulated ones
    (``method="simulated"``: continuous batching overlaps waves and pipeline stages as the engine does),
    and the list is ranked again. ``simulate_top=0`` keeps the closed form only.
    """
    if simulate_top < 0:
        raise UserError(f"--simulate-top must be at least 0, got {simulate_top}")
    scenario.check_lengths(scenario.workload.input_len, scenario.workload.output_len)
    ranked = rank([predict_layout(scenario, layout) for layout in candidate_layouts(scenario, num_gpus, tp, pp)])
    if simulate_top == 0:
        return ranked
    from perfmodel.analysis.simulate import simulate_offline

    out = []
    for i, p in enumerate(ranked):
        if p.fits and i < simulate_top:
            m = simulate_offline(scenario, p.layout)
            p = dataclasses.replace(p, requests_per_second=m.requests_per_second,
                                    tokens_per_second=m.tokens_per_second,
                                    output_tokens_per_second=m.output_tokens_per_second,
                                    elapsed_time=m.elapsed_s, method="simulated")
        out.append(p)
    return rank(out)


def min_gpus_to_fit(scenario: Scenario, limit: int = 512) -> int | None:
    """The fewest GPUs (powers of two and node multiples) on which some layout fits, or None."""
    counts = sorted({2**k for k in range(10)} | {scenario.cluster.gpus_per_node * k for k in range(1, 65)})
    for n in counts:
        if n > limit:
            break
        layouts = enumerate_layouts(n, num_attention_heads=scenario.model.num_attention_heads,
                                    num_kv_heads=scenario.model.num_kv_heads, num_layers=scenario.model.num_layers,
                                    gpus_per_node=scenario.cluster.gpus_per_node,
                                    tp_across_nodes=scenario.tp_across_nodes)
        if any(fit_check(scenario, layout)[2] for layout in layouts):
            return n
    return None


def predictions_frame(predictions: list[LayoutPrediction]) -> "pd.DataFrame":
    """The predictions as a pandas DataFrame (one row per layout, best first)."""
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(p) for p in predictions])
