"""The cost and memory models' coefficients: every efficiency and overhead in one place.

Defaults are first-principles or datasheet-derived values (each field's ``help`` says where it comes from);
a calibration profile (YAML, written by ``perfmodel calibrate fit``) replaces some of them with values fitted
from measured vLLM runs and names the data they came from. Profiles shipped in ``perfmodel/profiles/`` are the
defaults for their GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# libyaml's safe loader when PyYAML has it (10x faster on the profiles), else the pure-Python one
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

from perfmodel.errors import UserError


# What each group is and what informs it (calibrate/fit/offline.py fits the groups it has data for).
GROUPS = {
    "step": "efficiencies and per-step overheads of one GPU, fitted on offline elapsed times",
    "prefill": "per-prefill-token overhead; calibrate/fit/offline.py leaves it at its default (no fit of it yet)",
    "elementwise": "vLLM V0's elementwise kernels of a decoder layer (norms, rotary, KV cache write, activation); "
                   "left at their anchors (one model's runs cannot separate them from the GEMM and step terms)",
    "eager": "overhead without CUDA graphs; fitted when the runs include --enforce-eager engines",
    "tensor_parallel": "all-reduce terms; fitted when the runs include TP > 1",
    "pipeline_parallel": "stage-to-stage send latency; fitted when the runs include PP > 1",
    "memory": "profile-run memory inside vLLM's KV budget, fitted on the KV bytes vLLM measured",
    "graph_memory": "CUDA-graph memory, outside the KV budget: measured KV bytes do not inform it",
    "serving": "the API server's time from a request's send to the engine queue; fitted on online runs",
    "worker_loops": "vLLM V0's stop and restart of its workers' execution loop when the engine goes idle; left at "
                    "their anchors (Ray calls timed on this CPU: a closed loop's runs cannot separate them from the "
                    "server latency)",
    "kernel_gptq_exllama": "the exllama GPTQ kernel (vLLM's `gptq` method; the only int4 kernel on Volta); "
                           "fitted when the runs use it",
    "kernel_gptq_alt": "vLLM's GPTQ path for act-order checkpoints in layers whose input TP splits (alt kernel, "
                       "reconstruct + cuBLAS); fitted when the runs use it",
    "kernel_fused_moe": "vLLM's fused mixture-of-experts kernel against dense GEMMs; fitted when the runs include "
                        "an MoE model",
    "kernel_machete": "the Machete mixed-precision GEMM (int4 weights, 16-bit activations; Hopper); fitted when the "
                      "runs use it",
    "kernel_marlin": "the Marlin mixed-precision GEMM on Hopper (int4 weights, 16-bit activations), where Machete "
                     "refuses (act-order GPTQ layers whose input TP splits); fitted when the runs use it",
    "kernel_awq_marlin": "the kernel vLLM's awq_marlin method runs (perfmodel.cost.kernels row awq_marlin); fitted when "
                         "the runs use it",
    "kernel_fp8_w8a8": "CUTLASS scaled_mm on fp8 weights and activations; fitted when the runs use it",
    "kernel_fp8_kv": "attention reading an fp8 KV cache (--kv-cache-dtype fp8); fitted when the runs use one",
}


def _coef(default: float, help: str, lower: float, upper: float, *, group: str) -> Any:
    if group not in GROUPS:
        raise ValueError(f"coefficient group {group!r} is not one of {', '.join(GROUPS)}")
    return field(default=default, metadata={"help": help, "bounds": (lower, upper), "group": group})


@dataclass(frozen=True, kw_only=True)
class Coefficients:
    """Efficiencies (fractions of a datasheet peak) and overheads (seconds, bytes) of the model."""

    gemm_compute_efficiency: float = _coef(
        0.80, "fraction of dense peak FLOP/s that large GEMMs reach; 788 of 989 TFLOP/s was measured for an "
        "8192^3 bf16 matmul on an H200 in this workplace (library/device/KINDS.md)", 0.2, 1.0, group="step")
    gemm_half_efficiency_tokens: float = _coef(
        64.0, "GEMM rows (batch tokens) at which compute efficiency is half its maximum: "
        "eff(m) = eff_max * m / (m + m_half); tile quantisation of small-m GEMMs", 1.0, 4096.0, group="step")
    memory_efficiency: float = _coef(
        0.85, "fraction of datasheet HBM bandwidth that weight/KV streaming reaches; a device-to-device copy "
        "moved ~4.3 of 4.8 TB/s on an H200 here (KINDS.md)", 0.2, 1.0, group="step")
    attention_compute_efficiency: float = _coef(
        0.50, "fraction of dense peak reached by prefill attention (FlashAttention kernels reach roughly half "
        "of peak on long sequences)", 0.05, 1.0, group="step")
    attention_memory_efficiency: float = _coef(
        0.70, "fraction of HBM bandwidth reached by decode attention reading paged KV blocks", 0.05, 1.0,
        group="step")
    step_overhead_s: float = _coef(
        3e-3, "fixed CPU/launch time per engine step with CUDA graphs (scheduling, input preparation, "
        "sampling launch); vLLM V1 steps take a few milliseconds even for tiny batches", 0.0, 0.1, group="step")
    per_seq_overhead_s: float = _coef(
        2e-5, "CPU time per scheduled sequence per step (input tensors, sampling, output processing)", 0.0, 1e-3,
        group="step")
    per_prefill_token_overhead_s: float = _coef(
        0.0, "time per prefill token not explained by the operators (the elementwise kernels are one: "
        "elementwise_memory_efficiency); 0 by default", 0.0, 1e-5, group="prefill")
    elementwise_memory_efficiency: float = _coef(
        0.70, "vLLM V0: fraction of HBM bandwidth its elementwise kernels of a decoder layer reach (RMSNorm fused "
        "with the residual add, rotary embedding, the KV cache write, SiLU-and-mul): each streams the step's "
        "activations once (perfmodel.cost.step.elementwise_layer; V1 fuses them)", 0.05, 1.0, group="elementwise")
    elementwise_kernel_fixed_s: float = _coef(
        2.5e-6, "vLLM V0: time of one elementwise kernel of a decoder layer on a tiny batch (launch to end inside a "
        "CUDA graph or a stream of queued launches); a layer runs about five of them", 0.0, 5e-5, group="elementwise")
    eager_layer_overhead_s: float = _coef(
        6e-5, "extra time per decoder layer per step without CUDA graphs (--enforce-eager): about a dozen "
        "kernel launches of ~5 us each", 0.0, 1e-3, group="eager")
    allreduce_latency_s: float = _coef(
        1e-5, "fixed latency of one tensor-parallel all-reduce call (kernel launch, synchronisation), on top of "
        "the ring's per-hop link latency and bandwidth term", 0.0, 1e-3, group="tensor_parallel")
    nccl_allreduce_latency_s: float = _coef(
        1e-5, "fixed latency of one tensor-parallel all-reduce that vLLM hands to NCCL (pynccl) because its custom "
        "all-reduce does not apply (perfmodel.cost.comm.custom_allreduce_applies: e.g. TP8 on a V100 hybrid cube-mesh); "
        "on top of the ring's per-hop latency. Prior: NCCL's own tuning model puts a ring all-reduce's base latency at "
        "3.6-12 us depending on protocol and release (src/graph/tuning.cc baseLat), plus the launch", 0.0, 1e-3,
        group="tensor_parallel")
    allreduce_bandwidth_efficiency: float = _coef(
        0.70, "fraction of link bandwidth a ring all-reduce reaches (NCCL bus bandwidth vs link rate)", 0.05, 1.0,
        group="tensor_parallel")
    p2p_latency_s: float = _coef(
        2e-5, "latency of one pipeline-stage activation send", 0.0, 1e-2, group="pipeline_parallel")
    pp_step_overhead_s: float = _coef(
        1e-3, "vLLM V0 with pipeline parallelism: per step of a virtual engine, the round trip of the remote "
        "execute_model call to the last stage's driver (a Ray actor) and the engine's handling of its result; the "
        "stage's lock is held for the whole call (vLLM 0.7.0 RayDistributedExecutor._driver_execute_model_async, "
        "vllm.utils._run_task_with_lock), so the last stage takes no other batch meanwhile; a Ray call takes "
        "about a millisecond", 0.0, 0.05, group="pipeline_parallel")
    pp_per_seq_overhead_s: float = _coef(
        8e-5, "vLLM V0 with pipeline parallelism: per sequence of a virtual engine's step, what that Ray call "
        "adds: vLLM 0.7.0 sends every sequence's full metadata each step (about 8 KB, token ids included) and "
        "Ray pickles and unpickles it (benchmarks/anchors/ray_call.py; timed at 498 + 64 tokens: the payload grows "
        "with the context, and past Ray's 100 KiB inline limit a call costs ~1.5 ms more, neither modelled; with "
        "PP > 2 the middle stages' calls are not modelled either)", 0.0, 2e-3, group="pipeline_parallel")
    worker_loop_fixed_s: float = _coef(
        8.3e-4, "vLLM V0 with more than one GPU: the fixed part of stopping the workers' execution loop when the engine "
        "has nothing left (vLLM 0.7.0 LLMEngine.step / AsyncLLMEngine.run_engine_loop -> "
        "stop_remote_worker_execution_loop(_async)) and of starting it again with the next step "
        "(DistributedExecutorBase.execute_model(_async)); benchmarks/anchors/ray_worker_loop.py: 0.45 ms to start, "
        "1.21 ms to stop", 0.0, 0.05, group="worker_loops")
    worker_loop_per_worker_s: float = _coef(
        4.2e-4, "the same, per non-driver worker (TP x PP less one driver per stage): one Ray call each, "
        "start_worker_execution_loop sent, or its result awaited (0.39 ms to start, 0.44 ms to stop, timed)",
        0.0, 0.01, group="worker_loops")
    worker_loop_per_stage_s: float = _coef(
        1.14e-3, "the stop, per pipeline stage after the first: the empty execute_model call to its driver (a Ray "
        "actor), which broadcasts the stop to its TP workers (timed)", 0.0, 0.02, group="worker_loops")
    server_request_latency_s: float = _coef(
        0.0, "seconds from a client's send to the engine's queue under `vllm serve` (HTTP, tokenization, the "
        "server's engine client); in TTFT and E2E of served requests only. 0 by default: not known without "
        "online measurements", 0.0, 1.0, group="serving")
    server_stream_token_s: float = _coef(
        0.0, "API-server time per token of an engine step before a request's first or last token of that step "
        "reaches its client under `vllm serve` (vLLM 0.26 AsyncLLM.output_handler turns every running request's "
        "token into a RequestOutput, then each stream writes its chunk; simulator.engine.Replica._delivered). "
        "0 by default (profiles fitted without it); the anchor: 17 us per token, vLLM's own msgpack decode + OutputProcessor.process_outputs + completion chunk "
        "JSON timed with the vLLM 0.30 CPU wheel on this project's AMD EPYC (benchmarks/cpu/frontend_costs.py, "
        "docs/online-model.md); HTTP writes not included", 0.0, 1e-3, group="serving")
    server_graphless_layer_s: float = _coef(
        0.0, "under `vllm serve`, the least time per decoder layer (of one pipeline stage) of a step that runs "
        "without CUDA graphs (more tokens than vLLM's largest captured size, 512: perfmodel.cost.serving): the CPU "
        "launching the compiled model's kernels one by one. 0 by default (no floor): fitted on online runs", 0.0,
        2e-3, group="serving")
    exllama_memory_efficiency: float = _coef(
        0.5, "fraction of HBM bandwidth the exllama GPTQ kernel's int4 weight reads reach for batches of at most "
        "50 rows (vLLM csrc/quantization/gptq/q_gemm.cu, MAX_Q_GEMM_ROWS): each pass of 8 rows reads every "
        "weight again; larger batches dequantize to fp16 and use cuBLAS", 0.05, 1.0, group="kernel_gptq_exllama")
    exllama_reread_fraction: float = _coef(
        1.0, "share of the int4 weights read again from HBM for each further 8-row chunk of a batch on the "
        "exllama GPTQ kernel: the chunks are blocks of one launch (q_gemm.cu gemm_half_q_half_cuda_part, gridDim.y), "
        "so L2 may serve part of the re-reads; 1 = every chunk reads from HBM", 0.0, 1.0,
        group="kernel_gptq_exllama")
    exllama_reconstruct_memory_efficiency: float = _coef(
        0.5, "fraction of HBM bandwidth vLLM's reconstruct_exllama kernel reaches when the exllama GPTQ path takes more "
        "than 50 rows (q_gemm.cu gemm_half_q_half_cuda: read the int4 weights, write them as an fp16 matrix for "
        "cuBLAS, every step)", 0.05, 1.0, group="kernel_gptq_exllama")
    exllama_compute_efficiency: float = _coef(
        0.8, "fraction of the CUDA cores' half2 FMA peak (2 x the FP32 datasheet rate) the exllama GPTQ kernel's "
        "multiply reaches (it runs on CUDA cores, not tensor cores, and dequantizes every weight again for each "
        "8-row chunk): on a lent H100 it levels off at 29-35 of 134 TFLOP/s from 8 rows up (data/h100-kernels). "
        "0.8 by default (gemm_compute_efficiency's prior, as before): profiles fitted with the anchor set carry it",
        0.02, 1.0, group="kernel_gptq_exllama")
    exllama_kernel_fixed_s: float = _coef(
        0.0, "seconds each call of the exllama GPTQ kernel takes beyond its weight reads (launch, ramp-up and tail "
        "of a grid of 128-column blocks): vLLM's ops.gptq_gemm timed on a lent H100 fits 9.5 us + weights at 0.80 "
        "of HBM over 16 shapes (data/anchors/h100-gptq-anchor.json), where one fraction of HBM needs 0.15-0.72 by "
        "size. 0 by default (the fraction alone, as before): profiles fitted with the anchor set carry it",
        0.0, 1e-4, group="kernel_gptq_exllama")
    gptq_alt_memory_efficiency: float = _coef(
        0.5, "fraction of HBM bandwidth reached by vLLM's GPTQ kernels for an act-order (desc_act) checkpoint's "
        "layers whose input TP splits (vLLM 0.7.0 gptq.py GPTQLinearMethod.create_weights: ExllamaState.UNUSED): the "
        "alt kernel up to 8 rows (q_gemm.cu gemm_half_q_half_alt, MAX_ALT_GEMM_ROWS) and reconstruct_gptq + cuBLAS "
        "above, both reading each weight's scale and zero point at its own group (g_idx; perfmodel.cost.kernels "
        "gptq_alt_cost). Prior: the exllama kernel's (the same SIMT design: packed int4 loads, one thread per "
        "column), 0.5 x 900 GB/s on a V100; not measured", 0.05, 1.0, group="kernel_gptq_alt")
    fused_moe_efficiency: float = _coef(
        1.0, "speed of the expert GEMMs of vLLM's fused MoE kernel (Triton fused_moe, its own tile configs per "
        "expert shape and GPU) relative to dense GEMMs at the same FLOPs and bytes; scales both rates. 1 (as fast "
        "as dense) until MoE runs are fitted", 0.1, 1.0, group="kernel_fused_moe")
    machete_memory_efficiency: float = _coef(
        0.85, "fraction of datasheet HBM bandwidth the Machete GEMM's weight reads reach (int4 weights plus their "
        "group scales, perfmodel.model.precision weight_bytes_per_param). Prior: a dense GEMM's streaming reads "
        "(memory_efficiency's default): Machete loads its weight tiles with TMA like CUTLASS's dense GEMMs and "
        "dequantizes in registers (vLLM 0.26 kernels/linear/mixed_precision/machete.py MacheteLinearKernel)",
        0.1, 1.0, group="kernel_machete")
    machete_compute_efficiency: float = _coef(
        1.0, "speed of the Machete GEMM's tensor-core math relative to a dense 16-bit GEMM at the same rows "
        "(the weights are dequantized to 16 bits in registers before each wgmma); 1 = as fast as dense",
        0.2, 1.5, group="kernel_machete")
    marlin_memory_efficiency: float = _coef(
        0.43, "fraction of datasheet HBM bandwidth the Marlin GEMM's int4 weight reads reach (scales, zero points "
        "and act-order's g_idx included in weight_bytes_per_param's sense). Prior: vLLM 0.26's Marlin op timed on an "
        "H100 (data/anchors/h100-marlin-anchor.json)", 0.1, 1.0, group="kernel_marlin")
    marlin_compute_efficiency: float = _coef(
        0.50, "speed of the Marlin GEMM's tensor-core math relative to a dense 16-bit GEMM at the same rows (Marlin "
        "issues Ampere's mma.sync, not Hopper's wgmma). Prior: the H100 timing, 0.50 of cuBLAS fp16 (on Hopper "
        "only: below Hopper the Marlin row is priced at the dense GEMM rates)",
        0.2, 1.5, group="kernel_marlin")
    awq_marlin_memory_efficiency: float = _coef(
        0.85, "fraction of datasheet HBM bandwidth the awq_marlin method's GEMM reaches reading int4 weights, "
        "scales and zero points. On Hopper vLLM 0.26 runs it on Machete with zero points "
        "(awq_marlin.py AWQMarlinLinearMethod -> choose_mp_linear_kernel; the sweep-2 logs: 'Using "
        "MacheteLinearKernel for AutoAWQMarlinLinearMethod'); prior as machete_memory_efficiency", 0.1, 1.0,
        group="kernel_awq_marlin")
    awq_marlin_compute_efficiency: float = _coef(
        1.0, "speed of the awq_marlin method's tensor-core math relative to a dense 16-bit GEMM at the same rows; "
        "1 = as fast as dense", 0.2, 1.5, group="kernel_awq_marlin")
    fp8_w8a8_compute_efficiency: float = _coef(
        1.0, "speed of CUTLASS's fp8 scaled_mm relative to a dense GEMM at the same rows, at the fp8 tensor-core "
        "peak (twice the 16-bit peak in the datasheet); 1 = the same fraction of its peak as cuBLAS reaches of "
        "the 16-bit one", 0.2, 1.5, group="kernel_fp8_w8a8")
    fp8_w8a8_quant_bytes_per_element: float = _coef(
        3.0, "HBM bytes per input element of the per-token dynamic fp8 quantization vLLM runs before each fp8 "
        "GEMM (vLLM 0.26 kernels/linear/scaled_mm/ScaledMMLinearKernel.py FP8ScaledMMLinearKernel.apply_weights -> "
        "QuantFP8: read the 16-bit input, "
        "2 B, write fp8, 1 B; a separate kernel: the sweep's compilation config has fuse_norm_quant and "
        "fuse_act_quant off)", 0.0, 12.0, group="kernel_fp8_w8a8")
    fp8_kv_attention_memory_efficiency: float = _coef(
        0.70, "fraction of HBM bandwidth decode attention reaches reading an fp8 KV cache (FlashAttention 3 with "
        "fp8 KV, vLLM 0.26 v1/attention/backends/flash_attn.py); prior: attention_memory_efficiency's default",
        0.05, 1.0, group="kernel_fp8_kv")
    fp8_kv_attention_compute_efficiency: float = _coef(
        1.0, "speed of prefill attention on an fp8 KV cache on Hopper, where FlashAttention 3 multiplies in fp8 at "
        "the fp8 tensor-core peak, relative to attention_compute_efficiency's fraction of that peak; 1 = the same "
        "fraction as 16-bit attention reaches of its own", 0.2, 1.5, group="kernel_fp8_kv")
    activation_bytes_per_token: float = _coef(
        6.0, "peak activation memory of vLLM's profile run, in units of (hidden + intermediate/TP) elements "
        "of the activation dtype per token of max_num_batched_tokens", 0.0, 64.0, group="memory")
    non_torch_memory_bytes: float = _coef(
        0.6e9, "GPU memory outside torch's allocator that vLLM's profiler charges (NCCL buffers, cuBLAS "
        "workspaces)", 0.0, 8e9, group="memory")
    cuda_graph_memory_bytes: float = _coef(
        1.1e9, "memory kept by captured CUDA graphs (0 with --enforce-eager), outside the KV budget; vLLM 0.26 "
        "on an H200 logged 0.99 GiB (Llama-3.1-8B) and 1.16 GiB (Qwen2.5-32B), data/h200/logs.tar.gz", 0.0, 8e9,
        group="graph_memory")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            lower, upper = f.metadata["bounds"]
            value = getattr(self, f.name)
            if not lower <= value <= upper:
                raise UserError(f"coefficient {f.name}={value} is outside [{lower}, {upper}]")

    def replace(self, **changes: float) -> "Coefficients":
        return dataclasses.replace(self, **changes)

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(Coefficients))

    @staticmethod
    def bounds(name: str) -> tuple[float, float]:
        return {f.name: f.metadata["bounds"] for f in dataclasses.fields(Coefficients)}[name]

    @staticmethod
    def group(name: str) -> tuple[str, ...]:
        """The coefficients of one group (``GROUPS``), in field order."""
        if name not in GROUPS:
            raise UserError(f"unknown coefficient group {name!r}; known: {', '.join(GROUPS)}")
        return tuple(f.name for f in dataclasses.fields(Coefficients) if f.metadata["group"] == name)


@dataclass(frozen=True, kw_only=True)
class Profile:
    """Coefficients plus where they came from.

    ``calibrated`` is True for a profile fitted on measurements of this very GPU; a profile applied to another
    GPU (coefficients are fractions of that GPU's datasheet peaks) is marked ``transferred``.
    """

    name: str
    gpu: str | None
    coefficients: Coefficients
    fitted: tuple[str, ...] = ()
    source: str = "datasheet defaults"
    path: str | None = None
    # the profile's ``uncertainty:`` section (perfmodel.uncertainty.intervals reads it; calibrate/report/uncertainty.py writes it)
    uncertainty: Any = field(default=None, compare=False, repr=False)
    # coefficient -> (anchor value, anchor kind), from each coefficient's ``anchor:`` entry (anchored fits write them)
    anchors: dict[str, tuple[float, str]] = field(default_factory=dict, compare=False, repr=False)
    # the vLLM releases of the runs it was fitted on (``data.vllm_versions``; empty: not recorded)
    vllm_versions: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def status_for(self, gpu_name: str) -> str:
        """'calibrated', 'transferred' (fitted on another GPU) or 'default' (no fit at all)."""
        if not self.fitted:
            return "default"
        return "calibrated" if self.gpu == gpu_name else "transferred"


PROFILE_DIR = "profiles"


def load_profile(path: str | Path) -> Profile:
    """Read a calibration profile YAML (as written by ``perfmodel calibrate fit``)."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except FileNotFoundError:
        raise UserError(f"calibration profile {path} does not exist") from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise UserError(f"calibration profile {path}: cannot read as YAML text "
                        f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"calibration profile {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("coefficients"), dict):
        raise UserError(f"calibration profile {path} needs a 'coefficients' mapping")
    values = data["coefficients"]
    unknown = sorted(set(values) - set(Coefficients.names()))
    if unknown:
        raise UserError(f"calibration profile {path}: unknown coefficients {unknown}; "
                        f"known: {', '.join(Coefficients.names())}")
    no_value = sorted(k for k, v in values.items() if isinstance(v, dict) and "value" not in v)
    if no_value:
        raise UserError(f"calibration profile {path}: coefficients {no_value} have no 'value'; give each a number "
                        f"or a mapping with 'value'")
    anchors = {k: (_number(v["anchor"].get("value")), str(v["anchor"].get("kind", "")))
               for k, v in values.items() if isinstance(v, dict) and isinstance(v.get("anchor"), dict)}
    values = {k: (v["value"] if isinstance(v, dict) else v) for k, v in values.items()}
    try:
        coefficients = Coefficients(**{k: float(v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise UserError(f"calibration profile {path}: {exc}") from None
    return Profile(name=str(data.get("name", path.stem)), gpu=data.get("gpu"), coefficients=coefficients,
                   fitted=tuple(data.get("fitted", ())), source=str(data.get("source", path)), path=str(path),
                   uncertainty=data.get("uncertainty") or None,
                   anchors={k: (v, kind) for k, (v, kind) in anchors.items() if v is not None},
                   vllm_versions=_fitted_releases(data.get("data")))


def _fitted_releases(section: Any) -> tuple[str, ...]:
    """The ``data.vllm_versions`` list of a profile, as text; () where it is missing or not a list."""
    versions = section.get("vllm_versions") if isinstance(section, dict) else None
    return tuple(str(v) for v in versions) if isinstance(versions, list) else ()


def _number(value: Any) -> float | None:
    """An anchor's value as a float (YAML reads 1e-5 without a dot as text), None where it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def shipped_profile_path(gpu_name: str) -> Path | None:
    """The profile shipped in the package for this GPU, if any."""
    candidate = resources.files("perfmodel").joinpath(PROFILE_DIR, f"{gpu_name}.yaml")
    return Path(str(candidate)) if candidate.is_file() else None


def default_profile(gpu_name: str) -> Profile:
    """The shipped profile of this GPU; else the profile fitted on the nearest calibrated GPU (transferred);
    else datasheet defaults. Efficiencies are fractions of each GPU's own datasheet peaks, so they carry over."""
    own = shipped_profile_path(gpu_name)
    if own is not None:
        return load_profile(own)
    donor = _nearest_calibrated_gpu(gpu_name)
    if donor is not None:
        return load_profile(shipped_profile_path(donor))  # type: ignore[arg-type]
    return Profile(name="defaults", gpu=None, coefficients=Coefficients())


def _nearest_calibrated_gpu(gpu_name: str) -> str | None:
    """The catalog GPU with a shipped profile whose architecture is nearest: the same compute capability major
    (Hopper 9, Ampere 8, Volta 7; the catalog's cited field), else the newest architecture calibrated. A GPU
    outside the catalog (a YAML path) gets the newest."""
    from hardware import HardwareError, list_gpus, load_gpu

    def capability(gpu) -> tuple[int, int]:
        major, minor = (int(p) for p in str(gpu.compute_capability).split("."))
        return major, minor

    try:
        major = capability(load_gpu(gpu_name))[0]
    except HardwareError:
        major = None
    calibrated = [load_gpu(name) for name in list_gpus() if shipped_profile_path(name) is not None]
    best = max(calibrated, key=lambda g: (capability(g)[0] == major, capability(g), g.name), default=None)
    return best.name if best is not None else None
