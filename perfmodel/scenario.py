"""The composition root: one frozen ``Scenario`` turns (model, hardware, precision, engine, profile, workload)
into a memory plan, a step cost, the simulator's engine limits and a simulation, for any layout.

Every path goes through here: ``predict``, ``simulate``, ``compare``, ``plan``, KV offload, and every calibrate
path (``fit``, ``check``, ``calibrate predict``), so a flag, a default or an engine rule is added once.

    >>> from perfmodel.scenario import Scenario, ScenarioOptions
    >>> scenario = Scenario.from_options(ScenarioOptions(model="llama-3.1-8b", hardware="hgx-h200"))
    >>> plan = scenario.memory(Layout(tp=1))

``ScenarioOptions`` is what a user says (names, paths and numbers; picklable, so worker processes rebuild the
same scenario); ``Scenario`` is what that resolves to (loaded shapes, vLLM's defaults filled in).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hardware import load_hardware, with_nodes
from hardware.spec import ClusterSpec
from perfmodel.cost.coefficients import Coefficients, Profile, default_profile, load_profile
from perfmodel.cost.step import StepCostModel
from perfmodel.engine.args import DEFAULT_VLLM_VERSION, EngineArgs, default_engine_args
from perfmodel.errors import UserError
from perfmodel.analysis.estimate import OfflineWorkload
from perfmodel.layout import Layout, check_tp
from perfmodel.cost.memory import MemoryPlan, kv_bytes_per_token_per_gpu, memory_plan
from perfmodel.model.shape import ModelShape, load_model
from perfmodel.cost.offload import NEEDS_PP, OffloadStepCost, check_host_fraction, host_link, with_offload
from perfmodel.model.precision import Precision, resolve_precision
from perfmodel.scenario_options import BATCHING, ENTRY_POINTS, ScenarioOptions
from perfmodel.engine.releases import EngineGeneration, is_release, parse_release

if TYPE_CHECKING:
    from simulator.config import EngineConfig
    from simulator.request import Request
    from simulator.run import SimResult

@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Everything a prediction needs besides the layout, resolved."""

    model: ModelShape
    cluster: ClusterSpec
    precision: Precision
    engine: EngineArgs
    profile: Profile
    workload: OfflineWorkload
    options: ScenarioOptions  # what this was resolved from (``with_engine`` resolves it again)
    batching: str = "continuous"
    static_batch_size: int | None = None
    kv_offload: bool = False
    kv_offload_host_fraction: float = 0.5
    tp_across_nodes: bool = True  # layouts may put one TP group on several nodes
    expert_parallel: bool = False  # MoE experts split over each layout's TP x DP GPUs (perfmodel.expert_parallel)

    def __post_init__(self) -> None:
        if self.batching not in BATCHING:
            raise UserError(f"--batching must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        if self.static_batch_size is not None and self.static_batch_size < 1:
            raise UserError(f"--static-batch-size must be at least 1, got {self.static_batch_size}")
        if self.kv_offload:
            check_host_fraction(self.kv_offload_host_fraction)

    # -- building ----------------------------------------------------------------------------------------------
    @classmethod
    def from_options(cls, options: ScenarioOptions, *, model: ModelShape | None = None,
                     cluster: ClusterSpec | None = None, profile: Profile | None = None) -> "Scenario":
        """Load model and hardware by name or path and fill vLLM's defaults for what is not given.

        ``model``, ``cluster``, ``profile``: already loaded (calibration resolves many runs on one cluster, a
        record's model may live in a folder that its name no longer finds, a fit prices its own coefficients);
        they stand for ``options.model``, ``options.hardware`` and ``options.calibration``."""
        if options.entry_point not in ENTRY_POINTS:
            raise UserError(f"entry point must be 'offline' or 'serve', got {options.entry_point!r}")
        shape = model or load_model(options.model)
        cluster = cluster or load_hardware(options.hardware)
        if options.nodes is not None:
            cluster = with_nodes(cluster, options.nodes)
        tp_across_nodes = options.nodes is None if options.tp_across_nodes is None else options.tp_across_nodes
        if options.expert_parallel and not shape.has_expert_gemms:
            raise UserError(f"--enable-expert-parallel needs a mixture-of-experts model; {shape.name} is dense")
        precision = resolve_precision(shape, cluster.gpu, dtype=options.dtype, quantization=options.quantization,
                                      kv_cache_dtype=options.kv_cache_dtype, vllm_version=_release(options, cluster))
        if profile is None:
            profile = load_profile(options.calibration) if options.calibration else default_profile(cluster.gpu.name)
        engine = _resolve_engine(options, shape, cluster)
        workload = OfflineWorkload(input_len=options.input_len, output_len=options.output_len,
                                   num_prompts=options.num_prompts)
        return cls(model=shape, cluster=cluster, precision=precision, engine=engine, profile=profile,
                   workload=workload, batching=options.batching, static_batch_size=options.static_batch_size,
                   kv_offload=options.kv_offload, kv_offload_host_fraction=options.kv_offload_host_fraction,
                   tp_across_nodes=tp_across_nodes, expert_parallel=options.expert_parallel, options=options)

    @classmethod
    def build(cls, **options: Any) -> "Scenario":
        """``Scenario.from_options(ScenarioOptions(**options))``, for Python callers."""
        try:
            return cls.from_options(ScenarioOptions(**options))
        except TypeError as exc:
            raise UserError(f"unknown scenario option: {exc}") from None

    def with_(self, **changes: Any) -> "Scenario":
        return dataclasses.replace(self, **changes)

    def with_engine(self, **changes: Any) -> "Scenario":
        """The same scenario with other engine arguments (vLLM's names), resolved again as vLLM would: what
        depends on them (V0's CUDA-graph sizes on ``max_num_seqs``) follows, which patching the resolved
        ``EngineArgs`` would miss."""
        options = self.options.replace(**changes)
        return dataclasses.replace(self, engine=_resolve_engine(options, self.model, self.cluster), options=options)

    def with_coefficients(self, coefficients: Coefficients) -> "Scenario":
        """The same scenario priced with other coefficients (fitting tries many)."""
        return dataclasses.replace(self, profile=dataclasses.replace(self.profile, coefficients=coefficients))

    # -- what a layout costs -----------------------------------------------------------------------------------
    def memory(self, layout: Layout) -> MemoryPlan:
        """vLLM's memory plan of one replica: weights, activations, KV blocks (host blocks under offload)."""
        layout = self.expert_layout(layout)
        plan = memory_plan(self.model, self.cluster, layout, self.precision, self.engine, self.profile.coefficients)
        if self.kv_offload:
            plan = with_offload(plan, layout, self.cluster, self.engine.block_size, self.kv_offload_host_fraction)
        return plan

    def step_cost(self, layout: Layout) -> StepCostModel | OffloadStepCost:
        """Seconds one pipeline stage of ``layout`` needs per engine step (the simulator's ``StepCost``)."""
        layout = self.expert_layout(layout)
        cost = StepCostModel(self.model, self.cluster, layout, self.precision, self.profile.coefficients,
                             enforce_eager=self.engine.enforce_eager,
                             engine_generation=self.engine.engine_generation,
                             cuda_graph_batch_sizes=self.engine.cuda_graph_batch_sizes)
        if not self.kv_offload:
            return cost
        if layout.pp < 2:
            raise UserError(NEEDS_PP)
        bandwidth, latency = host_link(self.cluster)
        return OffloadStepCost(cost, kv_bytes_per_token_per_gpu(self.model, self.precision, layout), bandwidth,
                               latency)

    def expert_layout(self, layout: Layout) -> Layout:
        """``layout`` with EP = TP x DP under ``--enable-expert-parallel`` (vLLM turns EP on only when
        TP x DP > 1), else as given."""
        if self.expert_parallel and layout.ep == 1 and layout.tp * layout.dp > 1:
            return layout.with_expert_parallel()
        return layout

    def engine_config(self, num_kv_blocks: int, batching: str | None = None, *,
                      served: bool = False, pp: int, tp: int = 1) -> "EngineConfig":
        """The simulator's limits for one replica with ``num_kv_blocks`` KV blocks (``batching`` overrides).
        ``served``: requests arrive while the engine runs, so async scheduling's admission lag applies
        (offline, every request is queued before the first step: the lag changes nothing). ``pp``, ``tp``: the
        replica's pipeline stages (V0 turns async output processing off with more than one) and TP size (V0's
        workers stop and restart their loops around idle periods: ``worker_loop_*`` coefficients)."""
        from simulator.config import EngineConfig

        e = self.engine
        batching = batching or self.batching
        static = None
        if batching == "static" and self.static_batch_size is not None:
            static = min(self.static_batch_size, e.max_num_seqs)
        stop_s = restart_s = 0.0
        workers = tp * pp - pp  # non-driver workers: every stage's first rank drives it
        # (vLLM 0.7.0 stops them with chunked prefill and PP > 1 too, but perfmodel runs that case on the V1
        # pipeline model, which does not model the stop: a gap, docs/accuracy-notes.md)
        if (e.engine_generation is EngineGeneration.V0 and batching == "continuous" and tp * pp > 1
                and (pp == 1 or self.scheduler_generation(batching) == "v0")):
            c = self.profile.coefficients
            loops_s = c.worker_loop_fixed_s + workers * c.worker_loop_per_worker_s
            restart_s = loops_s if workers else 0.0  # TP1 x PPn: no worker to start, only later drivers to stop
            stop_s = loops_s + (pp - 1) * c.worker_loop_per_stage_s
        try:
            return EngineConfig(max_num_seqs=e.max_num_seqs, max_num_batched_tokens=e.max_num_batched_tokens,
                                num_kv_blocks=num_kv_blocks, block_size=e.block_size,
                                enable_chunked_prefill=e.enable_chunked_prefill, batching=batching,
                                static_batch_size=static, scheduler=self.scheduler_generation(batching),
                                enable_prefix_caching=e.enable_prefix_caching,
                                async_scheduling=(served and e.async_scheduling and batching == "continuous"
                                                  and self.scheduler_generation(batching) == "v1"),
                                async_output_processing=(e.async_output_processing and pp == 1
                                                         and batching == "continuous"),
                                idle_stop_s=stop_s, idle_restart_s=restart_s)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def _fitting_hint(self, layout: Layout) -> str:
        """'; the smallest layout that fits is -tp 4 -pp 1' (fewest GPUs per replica, then the least PP)."""
        from perfmodel.layout import valid_tp_sizes

        m = self.model
        options = sorted(((tp * pp, pp, tp) for tp in valid_tp_sizes(m.num_attention_heads, m.num_kv_heads, 64)
                          for pp in range(1, min(m.num_layers, 16) + 1) if tp * pp <= 128))
        for _, pp, tp in options:
            if self.memory(Layout(tp=tp, pp=pp, dp=1)).fits:
                return f"; the smallest layout that fits is -tp {tp} -pp {pp}"
        return "; no TP x PP up to 128 GPUs fits: try --quantization or a smaller --max-model-len"

    def simulate(self, layout: Layout, requests: list["Request"], *, max_concurrency: int | None = None,
                 router: str = "round_robin", record_timeline: bool = False, seed: int = 0,
                 batching: str | None = None, num_kv_blocks: int | None = None,
                 served: bool = False, step_time_scale: float = 1.0, keep_requests: bool = True) -> "SimResult":
        """Simulate ``requests`` on ``layout.dp`` replicas of ``layout`` (TP x PP GPUs each).

        KV blocks come from the memory plan unless ``num_kv_blocks`` is given (calibration replays a run with the
        blocks vLLM measured); step times from ``step_cost``, times ``step_time_scale`` (``plan --confidence``
        simulates the slow end of an interval). ``seed`` seeds the random router only.
        ``served``: the requests come through ``vllm serve`` (they pay ``server_request_latency_s``, and their
        first and last tokens ``server_stream_token_s`` per token of their step; V1 steps beyond the largest CUDA
        graph take at least ``server_graphless_layer_s`` per layer: docs/online-model.md).
        Raises UserError when the layout does not fit or a request cannot (its KV exceeds a replica's cache).
        ``requests`` may be a ``simulator.stream.RequestStream``; ``keep_requests=False`` keeps only the metrics
        (``SimResult.requests`` is None), in memory that does not grow with the number of requests.
        """
        from simulator.cluster import ROUTERS
        from simulator.run import simulate

        check_tp(layout.tp, self.model.num_attention_heads, self.model.num_kv_heads)
        if router not in ROUTERS:
            raise UserError(f"--router must be one of {', '.join(ROUTERS)}, got {router!r}")
        if max_concurrency is not None and max_concurrency < 1:
            raise UserError(f"--max-concurrency must be at least 1, got {max_concurrency}")
        if num_kv_blocks is None:
            plan = self.memory(layout)
            if not plan.fits:
                raise UserError(f"{layout} does not fit {self.model.name} on {self.cluster.gpu.display_name}: "
                                f"{plan.reason}{self._fitting_hint(layout)}")
            num_kv_blocks = plan.num_gpu_blocks
        engine = self.engine_config(num_kv_blocks, batching, served=served, pp=layout.pp, tp=layout.tp)
        cost = self.step_cost(layout)
        c = self.profile.coefficients
        if served and c.server_graphless_layer_s > 0 and self.engine.engine_generation is EngineGeneration.V1:
            from perfmodel.cost.serving import GraphlessFloorStepCost, max_cuda_graph_tokens

            floor_s = c.server_graphless_layer_s * self.model.num_layers / layout.pp
            cost = GraphlessFloorStepCost(cost, floor_s, max_cuda_graph_tokens(self.engine))
        if step_time_scale != 1.0:
            cost = ScaledStepCost(cost, step_time_scale)
        try:
            return simulate(requests, engine, cost, num_replicas=layout.dp, router=router,
                            max_concurrency=max_concurrency, seed=seed, record_timeline=record_timeline,
                            request_latency_s=c.server_request_latency_s if served else 0.0,
                            token_delivery_s=c.server_stream_token_s if served else 0.0, keep_requests=keep_requests)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def scheduler_generation(self, batching: str) -> str:
        """The simulator's scheduler: V0's prefill-or-decode steps for vLLM's V0 engine with chunked prefill
        off. V0 with chunked prefill runs decodes first and then prompt chunks within the budget (vLLM 0.7.0
        vllm/core/scheduler.py Scheduler._schedule_chunked_prefill), which the V1 model reproduces."""
        e = self.engine
        v0 = e.engine_generation is EngineGeneration.V0 and not e.enable_chunked_prefill and batching == "continuous"
        return str(EngineGeneration.V0 if v0 else EngineGeneration.V1)

    def check_gpus(self, num_gpus: int, what: str = "--gpus") -> None:
        """Refuse more GPUs than the hardware has (all its nodes) or than one job may use (its per-job node
        limit): a prediction for GPUs that are not there would be an answer to a question nobody can run."""
        c = self.cluster
        total = c.num_nodes * c.gpus_per_node
        if c.max_nodes_per_job is not None and num_gpus > c.max_nodes_per_job * c.gpus_per_node:
            raise UserError(f"{what} {num_gpus}: {c.name} jobs may use at most {c.max_nodes_per_job * c.gpus_per_node} "
                            f"GPUs ({c.max_nodes_per_job} nodes of {c.gpus_per_node}); ask for fewer")
        if num_gpus > total:
            raise UserError(f"{what} {num_gpus}: {c.name} has {total} GPUs ({c.num_nodes} node"
                            f"{'s' if c.num_nodes > 1 else ''} of {c.gpus_per_node}); ask for at most {total}, "
                            f"or give a cluster (--hardware taiwania2, a cluster YAML with num_nodes)")

    def check_lengths(self, input_len: float, output_len: float, what: str = "--input-len + --output-len") -> None:
        """vLLM refuses a request whose prompt and output exceed the context: prompt + output <= max_model_len
        (vLLM 0.7.0 vllm/engine/llm_engine.py LLMEngine._validate_model_inputs refuses the prompt; the V1
        processor refuses prompt + max_tokens)."""
        if input_len + output_len > self.max_model_len:
            raise UserError(f"{what} = {input_len:g} + {output_len:g} tokens exceeds max_model_len "
                            f"{self.max_model_len} (vLLM refuses such requests); raise --max-model-len or "
                            f"shorten the requests")

    @property
    def unmeasured_kernel_notes(self) -> tuple[str, ...]:
        """The kernel families this scenario runs (perfmodel.cost.kernels) whose coefficients the profile did not fit
        (their priors stand in), and the quantized ones that have no coefficient of their own."""
        from perfmodel.cost import kernels

        fitted, name = set(self.profile.fitted), self.profile.name
        used = kernels.families_used(self.model, self.precision, tp=None)  # any layout predict may rank
        notes = [f"profile {name} was fitted on no run of {kernels.family_name(family)}: {coef} = "
                 f"{getattr(self.profile.coefficients, coef):g} is {self._unfitted_source(coef)}"
                 for family in used for coef in family.fitted if coef not in fitted]
        for family in used:
            if family.quantized and not family.fitted:  # priced at the dense GEMM coefficients (perfmodel.cost.kernels)
                notes.append(f"the {family.name} kernel has no coefficient of its own: it is priced at the GEMM "
                             f"efficiencies profile {name} fitted on unquantized weights (how far that is off for "
                             f"Marlin, Machete and FP8 on the H200: data/h200-sweep2/README.md)")
        return tuple(notes)

    @property
    def notes(self) -> tuple[str, ...]:
        """Every line a prediction for this scenario carries: what vLLM would warn about (precision), the kernels
        the profile never measured, and a release its runs never used."""
        return (*self.precision.notes, *self.unmeasured_kernel_notes, *self.release_notes)

    @property
    def release_notes(self) -> tuple[str, ...]:
        """One line when the modelled vLLM release is not among those of the profile's runs: its defaults and kernel
        choice are that release's, but the speed of its engine code is the fitted releases', and the interval does
        not cover the difference (no measurement of it)."""
        fitted = [v for v in self.profile.vllm_versions if is_release(v)]  # "?": a run without its release
        release = self.engine.vllm_version
        if not fitted or not self.profile.fitted or any(parse_release(v) == parse_release(release) for v in fitted):
            return ()
        return (f"profile {self.profile.name} was fitted on runs of vLLM {', '.join(fitted)}, not {release}: "
                f"{release}'s defaults and kernel choice are modelled, its engine code runs at the fitted "
                "releases' speed, and the interval does not include the difference",)

    def _unfitted_source(self, coef: str) -> str:
        """What an unfitted coefficient's value is: its anchor (an anchored fit puts it there) or a generic prior."""
        value, kind = self.profile.anchors.get(coef, (None, ""))
        if value is not None and value == getattr(self.profile.coefficients, coef):
            return f"its anchor ({kind}), not fitted on a run" if kind else "its anchor, not fitted on a run"
        return "its prior, not a measurement"

    @property
    def max_model_len(self) -> int:
        """The context limit vLLM enforces: ``--max-model-len``, else the model's own."""
        return self.engine.max_model_len or self.model.max_position_embeddings


def _release(options: ScenarioOptions, cluster: ClusterSpec) -> str:
    """The vLLM release modelled: the user's version, else the cluster's, else perfmodel's."""
    return options.vllm_version or cluster.vllm_version or DEFAULT_VLLM_VERSION


def _resolve_engine(options: ScenarioOptions, shape: ModelShape, cluster: ClusterSpec) -> EngineArgs:
    """The engine the release runs on this GPU (``_release``)."""
    version = _release(options, cluster)
    return default_engine_args(cluster.gpu.memory_bytes, entry_point=options.entry_point, vllm_version=version,
                               model_max_len=shape.max_position_embeddings, gpu_name=cluster.gpu.display_name,
                               compute_capability=float(cluster.gpu.compute_capability), **options.engine_overrides())


class ScaledStepCost:
    """A step cost times a constant factor (the same stages): a uniformly slower or faster GPU."""

    def __init__(self, cost: Any, factor: float) -> None:
        if not factor > 0:
            raise UserError(f"a step-time scale must be positive, got {factor}")
        self.cost, self.factor, self.num_stages = cost, float(factor), cost.num_stages

    def __call__(self, batch: Any) -> Any:
        return self.cost(batch) * self.factor

    def stage_split_s(self, batch: Any) -> tuple[Any, Any, Any]:
        return tuple(part * self.factor for part in self.cost.stage_split_s(batch))

    def cpu_time_s(self, batch: Any) -> Any:
        return self.cost.cpu_time_s(batch) * self.factor
