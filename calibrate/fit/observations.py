"""Measured runs as the model sees them: a results record -> an ``Observation`` -> a simulated prediction.

This is the one place that reads the results schema (calibrate/README.md) for fitting and checking. Each
observation holds the ``perfmodel.scenario.Scenario`` of its run (the engine's own settings as vLLM resolved
them, ``engine_info``) and the per-request lengths the runner actually sent; it is priced with whatever
coefficients a fit tries, through that scenario, and simulated with either the KV-cache size vLLM measured
(to judge the step-cost model alone) or the memory model's (end to end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from calibrate.records.record import RunRecord, parse_record
from hardware import load_hardware
from hardware.spec import ClusterSpec
from perfmodel.cost.coefficients import Coefficients, Profile
from perfmodel.engine.args import EngineArgs
from perfmodel.errors import UserError
from perfmodel.analysis.estimate import OfflineWorkload
from perfmodel.layout import Layout
from perfmodel.cost.memory import MemoryPlan
from perfmodel.model.shape import ModelShape, load_model
from perfmodel.model.precision import Precision
from perfmodel.scenario import Scenario, ScenarioOptions
from simulator.request import Request
from simulator.run import SimResult

# Metrics compared between measurement and prediction, by mode.
OFFLINE_METRICS = ("tokens_per_second", "output_tokens_per_second", "requests_per_second")
ONLINE_METRICS = ("output_tokens_per_second", "ttft_s_mean", "ttft_s_median", "tpot_s_mean", "tpot_s_median",
                  "itl_s_mean", "e2e_s_mean", "decode_tokens_per_s_per_request_mean")


def run_workload(input_lens: np.ndarray, output_lens: np.ndarray) -> OfflineWorkload:
    """A run's requests as the scenario's workload (mean lengths, their count): what the interval's coefficient
    term costs (``perfmodel.uncertainty.intervals.coefficient_log_sd``), for measured and planned runs alike."""
    return OfflineWorkload(input_len=max(1, round(float(np.mean(input_lens)))),
                           output_len=max(1, round(float(np.mean(output_lens)))), num_prompts=len(input_lens))


@dataclass(frozen=True, kw_only=True)
class Observation:
    """One measured run, resolved into model objects."""

    run_id: str
    scenario: Scenario  # the run's model, hardware, precision and engine as vLLM resolved them
    layout: Layout
    mode: str  # "offline" | "online"
    input_lens: np.ndarray
    output_lens: np.ndarray
    arrival_s: np.ndarray  # request send times relative to the first (zeros offline / closed loop)
    max_concurrency: int | None
    measured: Mapping[str, float]
    measured_kv_cache_tokens: int | None
    measured_num_gpu_blocks: int | None
    measured_kv_cache_bytes: float | None  # "Available KV cache memory" of vLLM's log
    shared_prefix_len: int = 0  # every prompt starts with these same tokens (prefix caching reuses their KV)
    record: RunRecord | None = field(default=None, repr=False)  # the parsed results line (None: planned)

    @property
    def model(self) -> ModelShape:
        return self.scenario.model

    @property
    def model_name(self) -> str:
        return self.scenario.model.name

    @property
    def precision(self) -> Precision:
        return self.scenario.precision

    @property
    def engine(self) -> EngineArgs:
        return self.scenario.engine

    @property
    def layout_name(self) -> str:
        return f"TP{self.layout.tp}xPP{self.layout.pp}"

    @property
    def eager(self) -> bool:
        return self.engine.enforce_eager

    def memory(self, coefficients: Coefficients) -> MemoryPlan:
        return self.scenario.with_coefficients(coefficients).memory(self.layout)

    def step_cost(self, coefficients: Coefficients):
        return self.scenario.with_coefficients(coefficients).step_cost(self.layout)

    def requests(self) -> list[Request]:
        return [Request(id=i, arrival_s=float(a), num_prompt_tokens=int(p), num_output_tokens=int(o),
                        num_shared_prefix_tokens=self.shared_prefix_len)
                for i, (a, p, o) in enumerate(zip(self.arrival_s, self.input_lens, self.output_lens))]

    def simulate(self, coefficients: Coefficients, *, kv_from: str = "measured", record_timeline: bool = True
                 ) -> SimResult:
        """Replay the run in the simulator; ``kv_from`` = "measured" (vLLM's KV cache) or "model";
        ``record_timeline=False`` keeps only the metrics (the online fit's many re-simulations)."""
        scenario = self.scenario.with_coefficients(coefficients)
        blocks = None
        if kv_from == "measured" and self.measured_kv_cache_tokens:
            # tokens, not vLLM's block count: with hybrid (sliding + full) layer groups a block holds one group
            blocks = max(1, self.measured_kv_cache_tokens // self.engine.block_size)
        else:
            blocks = max(1, scenario.memory(self.layout).num_gpu_blocks)
        return scenario.simulate(self.layout, self.requests(), max_concurrency=self.max_concurrency,
                                 record_timeline=record_timeline, num_kv_blocks=blocks, served=self.mode == "online")


def observation_from_record(record: Mapping[str, Any] | RunRecord, cluster: ClusterSpec) -> Observation:
    """Resolve a results record (parsed once by calibrate.records.record); raises UserError naming the run when it lacks
    what a prediction needs."""
    rec = record if isinstance(record, RunRecord) else parse_record(record)
    eng, info = rec.run.engine, rec.engine_info
    model_spec = rec.run.model.spec
    if not model_spec:
        raise UserError(f"run {rec.run_id}: no model in the record")
    input_lens, output_lens = (np.asarray(v, dtype=int) for v in rec.request_lengths())
    sent = rec.requests.send_s if rec.requests is not None else None
    arrival = sent - sent.min() if sent is not None and len(sent) == len(input_lens) else np.zeros(len(input_lens))
    scenario = Scenario.from_options(record_options(rec, cluster.name, input_lens, output_lens),
                                     model=_load_record_model(model_spec, rec.run.model.path), cluster=cluster,
                                     profile=Profile(name="fit", gpu=cluster.gpu.name, coefficients=Coefficients()))
    return Observation(
        run_id=rec.run_id, scenario=scenario,
        layout=Layout(tp=eng.tensor_parallel_size, pp=eng.pipeline_parallel_size), mode=eng.mode,
        input_lens=input_lens, output_lens=output_lens, arrival_s=np.asarray(arrival, dtype=float),
        max_concurrency=rec.run.workload.max_concurrency, shared_prefix_len=rec.run.workload.shared_prefix_len,
        measured=rec.measurements.as_dict(),
        measured_kv_cache_tokens=info.kv_cache_tokens, measured_num_gpu_blocks=info.num_gpu_blocks,
        measured_kv_cache_bytes=info.kv_cache_memory_bytes_log, record=rec)


def record_options(rec: RunRecord, hardware: str, input_lens: np.ndarray, output_lens: np.ndarray
                   ) -> ScenarioOptions:
    """The scenario a measured run ran: what vLLM resolved (``engine_info``), else what the run asked for, else
    the release's defaults; the release the run recorded, else the cluster's; the run's mean lengths."""
    info = rec.engine_info
    workload = run_workload(input_lens, output_lens)
    return rec.run.engine.scenario_options(
        hardware=hardware, model=rec.run.model.spec, vllm_version=rec.provenance.vllm_version,
        max_num_seqs=info.max_num_seqs, max_num_batched_tokens=info.max_num_batched_tokens,
        max_model_len=info.max_model_len, block_size=info.block_size,
        enable_chunked_prefill=info.enable_chunked_prefill, enable_prefix_caching=info.enable_prefix_caching,
        input_len=workload.input_len, output_len=workload.output_len, num_prompts=workload.num_prompts)


def load_observations(records: list[Mapping[str, Any]], hardware: str) -> tuple[ClusterSpec, list[Observation]]:
    """Successful runs of the results as observations on ``hardware`` (GPU or cluster name, or a YAML path)."""
    cluster = load_hardware(hardware)
    observations = [observation_from_record(r, cluster) for r in records if r.get("status") == "ok"]
    if not observations:
        raise UserError("the results hold no successful runs to fit or check")
    return cluster, observations


# -- predicting one observation ------------------------------------------------------------------------------
def predicted_metrics(obs: Observation, result: SimResult) -> dict[str, float]:
    """The simulated run's metrics under the names the runner records."""
    m = result.metrics
    values = {name: getattr(m, name) for name in (*OFFLINE_METRICS, *ONLINE_METRICS) if hasattr(m, name)}
    r = result.requests
    decode_s = np.asarray(r.e2e_s) - np.asarray(r.ttft_s)
    tokens = np.asarray(r.num_output_tokens) - 1
    ok = (decode_s > 0) & (tokens > 0)
    if ok.any():  # each request's decode speed after its first token, averaged over requests
        values["decode_tokens_per_s_per_request_mean"] = float(np.mean(tokens[ok] / decode_s[ok]))
    return {k: float(v) for k, v in values.items() if v is not None and not math.isnan(float(v))}


def _load_record_model(spec: str, path: str | None) -> ModelShape:
    """The catalog model by name; else the config the run used (the spec may be a path that no longer exists)."""
    try:
        return load_model(spec)
    except UserError:
        if path:
            return load_model(path)
        raise
