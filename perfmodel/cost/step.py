"""Time of one engine step on one pipeline stage: per-operator roofline plus communication and overheads.

For a step that computes ``m`` tokens (prefill chunks plus one token per decoding sequence) each operator takes

    t_op = max(flops / (peak_flops_per_s * eff_compute), bytes / (hbm_bytes_per_s * eff_memory))

GEMMs (QKV, O, gate/up, down; MoE experts) read their weights once per step and do ``2 * m * in * out / TP``
FLOPs; their compute efficiency grows with the batch, ``eff(m) = eff_max * m / (m + m_half)``. Prefill attention
does ``4 * pairs * head_dim`` FLOPs per head over its query-key pairs; decode attention reads every decoding
sequence's K and V. Under vLLM V0 the elementwise kernels of a layer (norms, rotary, KV cache write, activation)
are an operator of their own (``elementwise_layer``); V1's compiled graph fuses them, and its fitted
per-prefill-token time stands for them. The LM head runs only for the sampled tokens, on the last stage. A TP
group all-reduces the hidden states twice per layer (ring, alpha-beta over the group's real link); pipeline stages pass activations to
the next stage; each all-reduce also pays a fixed per-call latency (launch and synchronisation), vLLM's own
all-reduce's or NCCL's, whichever vLLM picks for the group (``comm.custom_allreduce_applies``). Fixed per-step
and per-sequence overheads cover scheduling, input preparation and sampling, plus a per-layer launch cost
without CUDA graphs (``--enforce-eager``); every pipeline stage pays them for the whole batch, since each PP
rank prepares the batch's inputs itself. Expert GEMMs of an MoE layer run at ``fused_moe_efficiency`` of the
dense rates (vLLM's fused MoE kernel). Which kernel runs each weight matrix, and its formula, come from
perfmodel.cost.kernels' table (e.g. the exllama GPTQ kernel on Volta reads int4 weights once per 8 rows and multiplies on
the CUDA cores). Under vLLM V0 with pipeline parallelism every stage prepares the batch
itself (the CPU part of its time) and the last stage's result takes ``pp_step_overhead_s`` to reach the engine
process, during which that stage takes no other virtual engine's batch (``stage_split_s``).

Every stage is costed as the most loaded one (most layers, plus the LM head); the engine's latency for a batch
is ``num_stages`` stage times, its throughput one batch per stage time when enough batches are in flight.
Batch fields may be numpy arrays: the cost is then evaluated elementwise (the calibrator re-costs thousands of
recorded steps at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from hardware.spec import ClusterSpec
from perfmodel.cost import comm, kernels
from perfmodel.cost.coefficients import Coefficients
from perfmodel.layout import Layout, place
from perfmodel.cost.memory import kv_heads_per_gpu, layers_per_stage
from perfmodel.model.shape import ModelShape
from perfmodel.model.precision import Precision
from perfmodel.engine.releases import EngineGeneration


PIPELINE_TENSORS_PER_TOKEN = 2  # hidden states + residual (StepCostModel.pipeline_send_time_s)


class BatchLike(Protocol):
    """What the cost reads of a step (``simulator.BatchStats`` has these fields)."""

    num_prefill_tokens: Any
    num_decode_tokens: Any
    prefill_attention_pairs: Any
    prefill_context_tokens: Any
    decode_context_tokens: Any
    num_sampled_tokens: Any
    num_seqs: Any


@dataclass(frozen=True)
class _Gemm:
    """One weight matrix of a decoder layer as one GPU sees it."""

    flops_per_token: float  # 2 * in * out / TP * experts a token visits
    weight_bytes: float  # of one expert (or the dense matrix) on one GPU
    activation_bytes_per_token: float  # input + output elements read/written per token
    num_experts: int  # 1 for dense layers
    experts_per_token: int
    params: float = 0.0  # weights of one expert on one GPU
    quantized: bool = False  # weights stored in the quantized format (int4 for GPTQ)
    families: tuple = ()  # the kernel families that run it (perfmodel.cost.kernels.layer_families)
    input_elements_per_token: float = 0.0  # input features one GPU reads per token (fp8's activation quantization)


class StepCostModel:
    """Seconds one pipeline stage spends on one engine step (implements ``simulator.StepCost``)."""

    def __init__(self, model: ModelShape, cluster: ClusterSpec, layout: Layout, precision: Precision,
                 coefficients: Coefficients, *, enforce_eager: bool = False,
                 engine_generation: EngineGeneration = EngineGeneration.V1,
                 cuda_graph_batch_sizes: tuple[int, ...] = ()) -> None:
        self.model, self.cluster, self.layout = model, cluster, layout
        self.precision, self.coefficients, self.enforce_eager = precision, coefficients, enforce_eager
        # V0 (vLLM 0.7, perfmodel.engine.releases): prefill steps run eager, decode steps replay CUDA graphs
        # captured for these batch sizes (a batch runs padded up to the next one)
        v0 = EngineGeneration(engine_generation) is EngineGeneration.V0
        self._v0_graphs = (tuple(cuda_graph_batch_sizes) if v0 and not enforce_eager
                           else ())
        # GPTQ's exllama-derived kernels multiply with half2 FMAs on the CUDA cores, not the tensor cores: twice
        # the fp32 rate on Volta (CUDA C++ Programming Guide, arithmetic instruction throughput, compute capability
        # 7.0: 128 fp16 vs 64 fp32 results per clock per SM), and no tile quantisation of small batches
        self._simt_flops = 2.0 * cluster.gpu.peak_flops_per_s.get("float32", 0.0)
        self.num_stages = layout.pp
        gpu = cluster.gpu
        self._gemm_peak = gpu.peak_flops_per_s[precision.gemm_flops_dtype]
        self._attn_peak = gpu.peak_flops_per_s[precision.activation_dtype]
        if (kernels.kv_cache_coefficients(precision) and str(gpu.compute_capability).split(".")[0] == "9"
                and "fp8" in gpu.peak_flops_per_s):
            # an fp8 KV cache on Hopper: FlashAttention 3 quantizes the queries too and multiplies in fp8 (vLLM 0.26
            # v1/attention/backends/flash_attn.py: FlashAttentionBackend.supports_kv_cache_dtype takes fp8 only
            # with FA3 on cc 9.x; FlashAttentionImpl.forward: "queries are quantized in the attention layer")
            self._attn_peak = gpu.peak_flops_per_s["fp8"] * coefficients.fp8_kv_attention_compute_efficiency
        self._hbm = gpu.memory_bandwidth_bytes_per_s
        self._layers = layers_per_stage(model.num_layers, layout.pp)
        self._gemms = _layer_gemms(model, precision, layout.tp)
        self._ep_link = None  # expert parallelism: the DP group's link for dispatch/combine (see below)
        if layout.ep > 1:
            self._gemms, self._ep_link = _expert_parallel_setup(model, cluster, precision, layout)
        heads = model.num_attention_heads / layout.tp
        kv_heads = kv_heads_per_gpu(model, layout.tp)
        self._attn_flops_per_pair = 4.0 * model.head_dim * heads
        self._kv_bytes_per_token = 2.0 * kv_heads * model.head_dim * precision.kv_bytes_per_element
        self._q_bytes_per_token = 2.0 * heads * model.head_dim * precision.activation_bytes
        sliding = model.layer_is_sliding if model.sliding_window else ()
        self._sliding_fraction = sum(sliding) / model.num_layers if sliding else 0.0
        self._hidden_bytes = model.hidden_size * precision.activation_bytes
        self._lm_head_flops_per_token = 2.0 * model.hidden_size * model.vocab_size / layout.tp
        self._lm_head_bytes = model.hidden_size * model.vocab_size * precision.activation_bytes / layout.tp
        placement = place(layout, cluster.gpus_per_node)
        self._tp_bw, tp_latency = comm.link_for_group(cluster, layout.tp, placement.tp_spans_nodes)
        self._tp_hop_latency = tp_latency
        # vLLM's own all-reduce where it applies, else NCCL; each pays its own per-call latency. (vLLM also
        # hands messages over 8 MiB to NCCL; there the bandwidth term dominates and the latency is moot.)
        custom = comm.custom_allreduce_applies(cluster, layout.tp, placement.tp_spans_nodes)
        self._allreduce_call_s = coefficients.allreduce_latency_s if custom else coefficients.nccl_allreduce_latency_s
        # V0 with PP: stages prepare their batches themselves and the last one's result makes a Ray round trip
        # back to the engine process before that stage takes the next virtual engine's batch (see stage_split_s)
        self._host_serial = v0 and layout.pp > 1
        pp_bw, pp_latency = comm.p2p_link(cluster, placement.pp_spans_nodes) if layout.pp > 1 else (1.0, 0.0)
        self._pp_bw, self._pp_latency = pp_bw, pp_latency + coefficients.p2p_latency_s
        self._pp_paths = comm.pipeline_send_paths(cluster, layout.tp, placement.pp_spans_nodes)
        self._gemm_cache: dict[int, float] = {}
        self._scalar_cache: dict[tuple[int, bool], tuple[float, float, float]] = {}
        self._lm_head_cache: dict[int, float] = {}
        self._attn_flops_rate = self._attn_peak * coefficients.attention_compute_efficiency
        # an fp8 KV cache: its own efficiency (FlashAttention 3 reading fp8 blocks, kernels.kv_cache_coefficients)
        self._attn_bytes_rate = self._hbm * (coefficients.fp8_kv_attention_memory_efficiency
                                             if kernels.kv_cache_coefficients(precision)
                                             else coefficients.attention_memory_efficiency)
        self._has_experts = any(g.num_experts > 1 for g in self._gemms)
        # V0 runs vLLM's elementwise CUDA ops one kernel each; V1 compiles the model and Inductor fuses that work
        # into its own kernels, which the fitted per-prefill-token time stands for (elementwise_layer says where)
        self._elementwise = elementwise_layer(model, precision, layout.tp) if v0 else NO_ELEMENTWISE
        self._elementwise_rate = self._hbm * coefficients.elementwise_memory_efficiency

    # -- the operators, per GPU, seconds -------------------------------------------------------------------
    def _compute_efficiency(self, num_tokens: Any) -> Any:
        c = self.coefficients
        m = np.maximum(num_tokens, 1)
        return c.gemm_compute_efficiency * m / (m + c.gemm_half_efficiency_tokens)

    def gemm_time_s(self, num_tokens: Any) -> Any:
        """All GEMMs of one decoder layer for a step of ``num_tokens`` tokens."""
        if isinstance(num_tokens, (int, np.integer)):
            cached = self._gemm_cache.get(int(num_tokens))
            if cached is None:
                cached = self._gemm_cache[int(num_tokens)] = float(self._gemm_time_s(num_tokens))
            return cached
        return self._gemm_time_s(np.asarray(num_tokens, dtype=float))

    def _gemm_time_s(self, m: Any) -> Any:
        c = self.coefficients
        rates = kernels.GemmRates(coefficients=c, flops_per_s=self._gemm_peak * self._compute_efficiency(m),
                                  bytes_per_s=self._hbm * c.memory_efficiency, hbm_bytes_per_s=self._hbm,
                                  simt_flops_per_s=self._simt_flops)
        total = 0.0
        for g in self._gemms:
            total = total + kernels.layer_cost(g.families, g, m, rates)
        return total

    def attention_time_s(self, batch: BatchLike) -> Any:
        """Prefill and decode attention of one layer (sliding-window layers read at most their window)."""
        f = _floats(batch)
        return self._attention(f.prefill_attention_pairs, f.prefill_context_tokens, f.num_prefill_tokens,
                               f.decode_context_tokens, f.num_decode_tokens, np.maximum, np.minimum)

    def _attention(self, pairs: Any, prefill_context: Any, num_prefill: Any, decode_context: Any,
                   num_decode: Any, maximum: Any, minimum: Any) -> Any:
        """The attention formula once, for float arrays (numpy's maximum/minimum) or Python floats (builtins)."""
        prefill_flops = self._attn_flops_per_pair * pairs
        prefill_bytes = self._kv_bytes_per_token * prefill_context + self._q_bytes_per_token * num_prefill
        decode_ctx = decode_context
        if self._sliding_fraction:
            window = self.model.sliding_window * num_decode
            decode_ctx = ((1 - self._sliding_fraction) * decode_ctx
                          + self._sliding_fraction * minimum(decode_ctx, window))
        decode_flops = self._attn_flops_per_pair * decode_ctx
        decode_bytes = self._kv_bytes_per_token * decode_ctx
        flops_rate, bytes_rate = self._attn_flops_rate, self._attn_bytes_rate
        return (maximum(prefill_flops / flops_rate, prefill_bytes / bytes_rate)
                + maximum(decode_flops / flops_rate, decode_bytes / bytes_rate))

    def elementwise_time_s(self, num_tokens: Any) -> Any:
        """vLLM's elementwise kernels of one decoder layer: each a fixed time plus its activation bytes."""
        e = self._elementwise
        return (e.kernels * self.coefficients.elementwise_kernel_fixed_s
                + num_tokens * e.bytes_per_token / self._elementwise_rate)

    def allreduce_time_s(self, num_tokens: Any) -> Any:
        """Two TP all-reduces of the hidden states per layer (plus, under expert parallelism with DP replicas,
        the MoE layer's dispatch and combine: ``_expert_parallel_comm_s``)."""
        if self._ep_link is not None:
            return _expert_parallel_comm_s(self, num_tokens)
        if self.layout.tp == 1:
            return 0.0
        ring = comm.allreduce_time_s(num_tokens * self._hidden_bytes, self.layout.tp, self._tp_bw,
                                     self._tp_hop_latency, self.coefficients.allreduce_bandwidth_efficiency)
        return 2.0 * (ring + self._allreduce_call_s)

    def lm_head_time_s(self, num_sampled: Any) -> Any:
        c = self.coefficients
        flops = self._lm_head_flops_per_token * np.asarray(num_sampled, dtype=float)
        compute = flops / (self._gemm_peak * self._compute_efficiency(num_sampled))
        return np.maximum(compute, self._lm_head_bytes / (self._hbm * c.memory_efficiency))

    def pipeline_send_time_s(self, num_tokens: Any) -> Any:
        """A stage's output to the next: the hidden states and the residual stream, each a hidden vector per token
        (every decoder model vLLM 0.7.0 and 0.26 runs returns ``IntermediateTensors({"hidden_states",
        "residual"})`` on a stage that is not the last, e.g. ``LlamaModel.forward``). ``send_tensor_dict(...,
        all_gather_group=get_tp_group())`` has each TP rank send 1/TP of both to its peer, on
        ``comm.pipeline_send_paths`` links at once, and the receiving TP group all-gathers them."""
        if self.layout.pp == 1:
            return 0.0
        total = num_tokens * PIPELINE_TENSORS_PER_TOKEN * self._hidden_bytes
        send = comm.p2p_time_s(total / self._pp_paths, self._pp_bw, self._pp_latency)
        if self.layout.tp == 1:
            return send
        return send + comm.allgather_time_s(total, self.layout.tp, self._tp_bw, self._tp_hop_latency,
                                            self.coefficients.allreduce_bandwidth_efficiency)

    def overhead_time_s(self, batch: BatchLike) -> Any:
        """CPU and launch time of a step, paid in full by every pipeline stage."""
        f = _floats(batch)
        return self._overhead(f.num_seqs, f.num_prefill_tokens)

    def cpu_time_s(self, batch: BatchLike) -> Any:
        """Seconds of a step's CPU work before its GPU work is under way (the simulator's async output processing
        delivers the previous step's tokens then): ``overhead_time_s`` of a scalar step without numpy."""
        if type(batch.num_seqs) is int and type(batch.num_prefill_tokens) is int:
            return float(self._overhead(float(batch.num_seqs), float(batch.num_prefill_tokens)))
        return self.overhead_time_s(batch)

    def stage_split_s(self, batch: BatchLike) -> tuple[Any, Any, Any]:
        """V0 with pipeline parallelism, seconds of one step: (the CPU part of each stage's time, the part only the
        last stage spends, the return of the last stage's result to the engine process); zeros otherwise.

        - Preparation: the per-step and per-sequence overheads. vLLM 0.7.0
          `RayDistributedExecutor._driver_execute_model_async` sends the request to every stage's driver at once,
          each prepares the batch itself, so a stage prepares while earlier stages compute.
        - Last stage only: the LM head (vLLM 0.7.0's models build `lm_head` only where
          `get_pp_group().is_last_rank`, e.g. `Qwen2ForCausalLM`; the stage time is the most loaded stage's, and
          `get_pp_indices` gives the others no more layers).
        - Return: ``pp_step_overhead_s`` plus ``pp_per_seq_overhead_s`` per sequence, the Ray round trip of the
          last stage's `execute_model` call (its request carries every sequence's metadata) and the engine's
          handling of it. `_driver_execute_model_async` holds each stage's lock
          (`vllm.utils._run_task_with_lock`) around the whole remote call, and the last stage's returns only
          after sampling: the stage takes no other virtual engine's batch until then."""
        if not self._host_serial:
            return 0.0, 0.0, 0.0
        c = self.coefficients
        if type(batch.num_seqs) is int and type(batch.num_prefill_tokens) is int:  # the simulator's steps
            return (float(self._per_step(float(batch.num_seqs), float(batch.num_prefill_tokens))),
                    float(self._lm_head_s(batch.num_sampled_tokens)),
                    c.pp_step_overhead_s + c.pp_per_seq_overhead_s * batch.num_seqs)
        f = _floats(batch)
        return (self._per_step(f.num_seqs, f.num_prefill_tokens), self.lm_head_time_s(f.num_sampled_tokens),
                c.pp_step_overhead_s + c.pp_per_seq_overhead_s * f.num_seqs)

    def _lm_head_s(self, num_sampled: int) -> float:
        """``lm_head_time_s`` of an integer count, cached per count (the simulator's scalar steps)."""
        lm_head_s = self._lm_head_cache.get(num_sampled)
        if lm_head_s is None:
            lm_head_s = self._lm_head_cache[num_sampled] = self.lm_head_time_s(num_sampled)
        return lm_head_s

    def _per_step(self, num_seqs: Any, num_prefill: Any) -> Any:
        c = self.coefficients
        return c.step_overhead_s + c.per_seq_overhead_s * num_seqs + c.per_prefill_token_overhead_s * num_prefill

    def _overhead(self, num_seqs: Any, num_prefill: Any) -> Any:
        c = self.coefficients
        per_step = self._per_step(num_seqs, num_prefill)
        if self.enforce_eager:
            eager = c.eager_layer_overhead_s * self._layers
        elif self._v0_graphs:  # V0 replays graphs for decode-only steps; a step with prefill runs eager
            eager = c.eager_layer_overhead_s * self._layers * (num_prefill > 0)
        else:
            eager = 0.0
        # Every pipeline stage prepares the whole batch: V1 (vLLM 0.26 GPUModelRunner.execute_model runs
        # _update_states and _prepare_inputs on every PP rank) and V0 alike (stage_split_s)
        return per_step + eager

    def _graph_tokens(self, num_prefill: Any, num_decode: Any) -> Any:
        """Tokens the GEMMs and all-reduces process: a V0 decode-only step runs padded up to the next captured
        batch size (vLLM 0.7.0 ModelInputForGPUBuilder._get_cuda_graph_pad_size); otherwise the real count."""
        tokens = num_prefill + num_decode
        if not self._v0_graphs:
            return tokens
        sizes = np.asarray(self._v0_graphs)
        if np.ndim(tokens) == 0 and np.ndim(num_prefill) == 0:
            if num_prefill or num_decode > sizes[-1]:
                return tokens
            return type(tokens)(sizes[np.searchsorted(sizes, num_decode)])
        decode = np.asarray(num_decode)
        index = np.minimum(np.searchsorted(sizes, decode), len(sizes) - 1)
        padded = np.where(decode <= sizes[-1], sizes[index], decode)
        return np.where(np.asarray(num_prefill) > 0, tokens, padded)

    # -- the step ------------------------------------------------------------------------------------------
    def breakdown(self, batch: BatchLike) -> dict[str, Any]:
        """Seconds per component of one stage's step."""
        tokens = batch.num_prefill_tokens + batch.num_decode_tokens
        graph_tokens = self._graph_tokens(batch.num_prefill_tokens, batch.num_decode_tokens)
        return {
            "gemm_s": self._layers * self.gemm_time_s(graph_tokens),
            "attention_s": self._layers * self.attention_time_s(batch),
            "elementwise_s": self._layers * self.elementwise_time_s(graph_tokens),
            "allreduce_s": self._layers * self.allreduce_time_s(graph_tokens),
            "lm_head_s": self.lm_head_time_s(batch.num_sampled_tokens),
            "pipeline_send_s": self.pipeline_send_time_s(tokens),
            "overhead_s": self.overhead_time_s(batch),
        }

    def __call__(self, batch: BatchLike) -> Any:
        if (type(batch.num_seqs) is int and type(batch.num_prefill_tokens) is int  # the simulator's scalar steps
                and type(batch.num_decode_tokens) is int and type(batch.num_sampled_tokens) is int
                and type(batch.decode_context_tokens) is int and type(batch.prefill_context_tokens) is int
                and type(batch.prefill_attention_pairs) in (int, float)):
            return self._scalar_time(batch.num_prefill_tokens, batch.num_decode_tokens,
                                     batch.prefill_attention_pairs, batch.prefill_context_tokens,
                                     batch.decode_context_tokens, batch.num_sampled_tokens, batch.num_seqs)
        short = self._short_array_call(batch)
        if short is not None:
            return short
        parts = self.breakdown(batch)
        total = sum(parts.values())
        return float(total) if np.ndim(total) == 0 else total

    _SHORT_ARRAY = 32  # below this many steps, a Python loop over the scalar path beats numpy's per-call overhead

    def _short_array_call(self, batch: BatchLike) -> np.ndarray | None:
        """Array batches of a few steps (the simulator's decode runs between arrivals), one step at a time
        through the scalar path; None when the batch is long, not integer, or the model has MoE layers (whose
        ``**`` may round differently in numpy's vector loops). Elementwise IEEE operations are the same one
        element at a time, so results are bit-identical to the array path."""
        if self._has_experts:
            return None
        columns = [np.asarray(getattr(batch, name)) for name in _FIELDS]
        n = columns[-1].size
        if not 1 <= n <= self._SHORT_ARRAY or any(c.ndim > 1 for c in columns):
            return None
        if any(c.dtype.kind not in "iu" for i, c in enumerate(columns) if i != 2) or columns[2].dtype.kind not in "iuf":
            return None
        rows = zip(*(c.tolist() if c.ndim else [c.item()] * n for c in columns))
        if any(c.ndim and c.size != n for c in columns):
            return None
        scalar_time = self._scalar_time
        return np.array([scalar_time(*row) for row in rows])

    def _scalar_time(self, num_prefill: int, num_decode: int, pairs: float, prefill_context: int,
                     decode_context: int, num_sampled: int, num_seqs: int) -> float:
        """``__call__`` for one step given as Python numbers, without numpy: the same operations in the same
        order (so bit-identical results), with the terms that depend on one count only cached per count. The
        simulator costs a step about twice per request, so this path sets its speed."""
        tokens = num_prefill + num_decode
        key = (tokens, num_prefill > 0)
        cache = self._scalar_cache.get(key)
        if cache is None:
            graph_tokens = int(self._graph_tokens(num_prefill, num_decode))
            cache = self._scalar_cache[key] = (self._layers * self.gemm_time_s(graph_tokens),
                                               self._layers * self.elementwise_time_s(graph_tokens),
                                               self._layers * self.allreduce_time_s(graph_tokens),
                                               self.pipeline_send_time_s(tokens))
        gemm_s, elementwise_s, allreduce_s, send_s = cache
        lm_head_s = self._lm_head_s(num_sampled)
        attention = self._attention(float(pairs), float(prefill_context), float(num_prefill), float(decode_context),
                                    float(num_decode), max, min)
        overhead_s = self._overhead(float(num_seqs), float(num_prefill))
        return float(0 + gemm_s + self._layers * attention + elementwise_s + allreduce_s + lm_head_s + send_s
                     + overhead_s)


def _floats(batch: BatchLike) -> Any:
    """The batch's fields as float arrays (scalars become 0-d arrays)."""
    return SimpleNamespace(**{name: np.asarray(getattr(batch, name), dtype=float) for name in _FIELDS})


_FIELDS = ("num_prefill_tokens", "num_decode_tokens", "prefill_attention_pairs", "prefill_context_tokens",
           "decode_context_tokens", "num_sampled_tokens", "num_seqs")


# ---- expert parallelism (issue 25; vLLM's --enable-expert-parallel, EP = TP x DP) ---------------------------


def _expert_parallel_setup(model: ModelShape, cluster: ClusterSpec, precision: Precision,
                           layout: Layout) -> tuple[tuple[_Gemm, ...], tuple[float, float]]:
    """The GEMMs one GPU of an EP layout runs per layer, and the link of its DP group.

    The attention and router GEMMs stay as under TP. Each GPU holds ``E_local = ceil(E / EP)`` whole experts
    (vLLM 0.11.2 fused_moe/layer.py determine_expert_map) and computes them for the tokens of every DP replica
    (the dispatch all-gathers them): with uniform routing, ``m * dp * k * E_local / E`` token-expert pairs for a
    step of ``m`` tokens per replica, i.e. ``dp * k * E_local / E`` full-expert visits per replica token. The
    experts it touches are those at least one of the ``m * dp`` tokens visits, ``E_local (1 - (1 - k/E)^(m dp))``,
    which ``_gemm_time_s``'s formula gives with ``E_local`` experts and ``E_local (1 - (1 - k/E)^dp)`` visits
    per token. The replicas are assumed to step together with equal batches (vLLM runs DP ranks of an MoE model
    in lockstep, padding idle ones with dummy batches)."""
    dense = [g for g, lin in zip(_layer_gemms(model, precision, layout.tp), model.linear_layers())
             if lin.num_experts <= 1]
    experts = []
    for linear in model.linear_layers():
        if linear.num_experts <= 1:
            continue
        total, k, dp = linear.num_experts, linear.num_per_token_active, layout.ep // layout.tp
        local = -(-total // layout.ep)
        visits = dp * k * local / total
        params = linear.in_features * linear.out_features
        facts, kernel = kernels.layer_facts(precision, linear, 1)  # whole experts: no TP split of their input
        experts.append(_Gemm(flops_per_token=2.0 * params * visits,
                             weight_bytes=params * precision.weight_bytes_per_param,
                             activation_bytes_per_token=(linear.in_features + linear.out_features) * visits
                             * precision.activation_bytes,
                             num_experts=local, experts_per_token=local * (1.0 - (1.0 - k / total) ** dp),
                             params=params, quantized=facts.quantized,
                             families=kernels.layer_families(facts, kernel)))
    dp = layout.ep // layout.tp  # the replicas sharing the experts (the DP group)
    spans = layout.ep * layout.pp > cluster.gpus_per_node  # their stages on several nodes
    link = comm.dp_group_link(cluster, dp, spans) if dp > 1 else (0.0, 0.0)  # unused without DP
    return tuple(dense + experts), link


def _expert_parallel_comm_s(cost: "StepCostModel", num_tokens: Any) -> Any:
    """Per layer: the TP group's two all-reduces (attention output, and the MoE output that vLLM's FusedMoE
    all-reduces over TP after combining) and the MoE layer's dispatch and combine over the DP group
    (``comm.expert_dispatch_combine_time_s``), which pays NCCL's per-call latency twice."""
    c, layout = cost.coefficients, cost.layout
    dp = layout.ep // layout.tp
    total = 0.0
    if layout.tp > 1:
        ring = comm.allreduce_time_s(num_tokens * cost._hidden_bytes, layout.tp, cost._tp_bw, cost._tp_hop_latency,
                                     c.allreduce_bandwidth_efficiency)
        total = 2.0 * (ring + cost._allreduce_call_s)
    if dp > 1:
        bandwidth, latency = cost._ep_link
        total = total + comm.expert_dispatch_combine_time_s(num_tokens, cost._hidden_bytes, dp, bandwidth,
                                                            latency, c.allreduce_bandwidth_efficiency)
        total = total + 2.0 * c.nccl_allreduce_latency_s
    return total


# ---- end of expert parallelism -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ElementwiseLayer:
    """vLLM's elementwise kernels of one decoder layer on one GPU: how many, and the bytes they move per token."""

    kernels: int
    bytes_per_token: float


NO_ELEMENTWISE = ElementwiseLayer(kernels=0, bytes_per_token=0.0)


def elementwise_layer(model: ModelShape, precision: Precision, tp: int) -> ElementwiseLayer:
    """The elementwise kernels vLLM's V0 engine runs between a layer's GEMMs and attention. vLLM 0.7.0 compiles
    nothing by default (config.py CompilationConfig.level 0), so every CustomOp runs its own CUDA kernel
    (custom_op.py CustomOp.default_on: on below CompilationLevel.PIECEWISE); V1 compiles the model with Inductor,
    which turns these ops off and fuses their work into generated kernels. Per layer (vLLM 0.7.0 llama.py
    LlamaDecoderLayer.forward, LlamaAttention.forward): each RMSNorm fused with the residual add (layernorm.py,
    ``fused_add_rms_norm``: reads the hidden states and the residual, writes both), the rotary embedding of this
    GPU's query and key heads (in place), the KV cache write (``reshape_and_cache``: reads K and V, writes them
    into the cache), the attention backend's copy of its result into the layer's output (xformers.py
    XFormersImpl.forward, ``output[:n] = out``; counted for every V0 backend) and SiLU-and-mul (activation.py:
    reads gate and up, writes their product), for each expert a token visits in an MoE layer. A quantized QKV with
    a bias adds it in place (gptq.py / awq.py ``apply``: ``output.add_(bias)``; an unquantized one fuses it into
    cuBLAS). Cohere (commandr.py CohereDecoderLayer.forward) norms without the residual (a compiled LayerNorm)
    and adds residual, attention and MLP in two eager adds; per-head Q/K norms (Cohere's use_qk_norm, Qwen3) read
    and write those heads once more, in a kernel each for Q and K. Gemma-2's extra norms are counted as fused ones."""
    act, kv = precision.activation_bytes, precision.kv_bytes_per_element
    q_heads, kv_heads = model.num_attention_heads / tp, kv_heads_per_gpu(model, tp)
    visits = max(1, model.num_experts_per_tok)
    hidden = model.hidden_size * act
    if model.parallel_attn_mlp:
        norms = model.num_norms_per_layer * 2.0 * hidden + 2 * 3.0 * hidden
        kernels = model.num_norms_per_layer + 2
    else:
        norms = model.num_norms_per_layer * 4.0 * hidden
        kernels = model.num_norms_per_layer
    rotary = 2.0 * (q_heads + kv_heads) * model.head_dim * act
    cache = 2.0 * kv_heads * model.head_dim * (act + kv)
    attention_out = 2.0 * q_heads * model.head_dim * act
    mlp = 3.0 * model.intermediate_size / tp * visits * act
    qk_norm = rotary if model.qk_norm else 0.0
    bias = (2.0 * (q_heads + 2 * kv_heads) * model.head_dim * act
            if model.qkv_bias and precision.quantization else 0.0)
    kernels += 4 + (2 if model.qk_norm else 0) + (1 if bias else 0)
    return ElementwiseLayer(kernels=kernels,
                            bytes_per_token=norms + rotary + cache + attention_out + mlp + qk_norm + bias)


def _layer_gemms(model: ModelShape, precision: Precision, tp: int) -> tuple[_Gemm, ...]:
    gemms = []
    for linear in model.linear_layers():
        params = linear.in_features * linear.out_features / tp
        experts, visits = linear.num_experts, linear.num_per_token_active
        if linear.parallel == "column":
            act = linear.in_features + linear.out_features / tp
        elif linear.parallel == "row":
            act = linear.in_features / tp + linear.out_features
        else:  # replicated (e.g. the MoE router)
            act = linear.in_features + linear.out_features
            params = linear.in_features * linear.out_features
        facts, kernel = kernels.layer_facts(precision, linear, tp)
        gemms.append(_Gemm(flops_per_token=2.0 * params * visits,
                           weight_bytes=params * (precision.weight_bytes_per_param if linear.quantizable
                                                  else precision.activation_bytes),
                           activation_bytes_per_token=act * visits * precision.activation_bytes,
                           num_experts=max(1, experts), experts_per_token=visits, params=params,
                           quantized=facts.quantized, families=kernels.layer_families(facts, kernel),
                           input_elements_per_token=(linear.in_features / tp if linear.parallel == "row"
                                                     else linear.in_features) * visits))
    return tuple(gemms)
