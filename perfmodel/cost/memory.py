"""GPU memory as vLLM sizes it: what is left for the KV cache, in bytes, blocks and tokens.

vLLM's worker profiles one forward pass at ``max_num_batched_tokens`` and sets

    kv_cache_bytes = gpu_memory_utilization * total_gpu_bytes
                     - weights_bytes - peak_activation_bytes - non_torch_bytes

per GPU, then ``num_gpu_blocks = kv_cache_bytes // block_bytes`` with a block holding ``block_size`` tokens of
every layer the GPU owns (its pipeline stage, its share of KV heads). The engine takes the minimum over GPUs,
and logs ``num_gpu_blocks * block_size`` as "GPU KV cache size: N tokens"; that is ``kv_cache_tokens`` here.
CUDA graphs are captured after the KV cache is sized (vLLM 0.26 logs their memory separately), so they live in
the memory above ``gpu_memory_utilization`` and do not shrink the KV cache; the plan reports them.
Sliding-window layers are stored like full ones in that count (vLLM's hybrid allocator divides the blocks
among layer groups, which gives the same token count); they only matter for ``max_concurrency``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hardware.spec import GIB, ClusterSpec
from perfmodel.cost.coefficients import Coefficients
from perfmodel.engine.args import EngineArgs
from perfmodel.layout import Layout
from perfmodel.model.shape import ModelShape
from perfmodel.model.precision import Precision

SAMPLER_LOGIT_BYTES = 4  # vLLM's dummy sampler run materialises fp32 logits for max_num_seqs rows


@dataclass(frozen=True, kw_only=True)
class WeightSplit:
    """Bytes by where they live: the embedding (first stage), the LM head (last stage), one decoder layer."""

    embedding_bytes: float
    lm_head_bytes: float  # a copy of the embedding when tied and the pipeline has several stages
    layer_bytes: float


def weight_split(model: ModelShape, precision: Precision) -> WeightSplit:
    """Quantised linear weights at ``weight_bytes_per_param``; embeddings, norms, biases and routers in the
    activation dtype."""
    embedding = model.vocab_size * model.hidden_size
    quantized = model.num_quantizable_params()
    other = model.num_params() - model.num_embedding_params() - quantized - model.hidden_size
    layer = (quantized * precision.weight_bytes_per_param + other * precision.activation_bytes) / model.num_layers
    return WeightSplit(embedding_bytes=embedding * precision.activation_bytes,
                       lm_head_bytes=embedding * precision.activation_bytes, layer_bytes=layer)


def layers_per_stage(num_layers: int, pp: int) -> int:
    """Layers of the largest pipeline stage (vLLM splits layers as evenly as it can)."""
    return math.ceil(num_layers / pp)


def weight_bytes_per_gpu(model: ModelShape, precision: Precision, layout: Layout) -> float:
    """Weights of the most loaded GPU: its stage's layers plus the embedding and/or LM head it holds, all
    split over TP (embedding and LM head are vocabulary-parallel)."""
    split = weight_split(model, precision)
    layers = layers_per_stage(model.num_layers, layout.pp) * split.layer_bytes
    if layout.pp == 1:
        ends = split.embedding_bytes + (0.0 if model.tie_word_embeddings else split.lm_head_bytes)
    else:  # the first stage holds the embedding, the last the LM head (its own copy when tied)
        ends = max(split.embedding_bytes, split.lm_head_bytes)
    if layout.ep > 1:
        return (layers + ends) / layout.tp - expert_parallel_saving_bytes(model, precision, layout)
    return (layers + ends) / layout.tp


def expert_parallel_saving_bytes(model: ModelShape, precision: Precision, layout: Layout) -> float:
    """Expert weights a GPU of the most loaded stage does not hold under expert parallelism: TP holds 1/TP of
    every expert; EP holds whole experts, ``ceil(E / EP)`` on the most loaded GPU (vLLM 0.11.2
    vllm/model_executor/layers/fused_moe/layer.py determine_expert_map: the first ``E % EP`` ranks get one more).
    The router and the attention weights stay split over TP."""
    experts = [lin for lin in model.linear_layers() if lin.num_experts > 1]
    if layout.ep == 1 or not experts:
        return 0.0
    per_layer = sum(lin.in_features * lin.out_features * lin.num_experts for lin in experts)
    bytes_per_param = precision.weight_bytes_per_param  # expert GEMMs are quantizable linears
    local = math.ceil(model.num_experts / layout.ep) / model.num_experts
    layers = layers_per_stage(model.num_layers, layout.pp)
    return layers * per_layer * bytes_per_param * (1.0 / layout.tp - local)


def kv_heads_per_gpu(model: ModelShape, tp: int) -> int:
    """KV heads stored on one GPU: split over TP, replicated when TP exceeds the KV heads."""
    return max(1, model.num_kv_heads // tp)


def kv_bytes_per_token_per_gpu(model: ModelShape, precision: Precision, layout: Layout) -> float:
    """Bytes one token's K and V take on the most loaded GPU."""
    layers = layers_per_stage(model.num_layers, layout.pp)
    return 2 * layers * kv_heads_per_gpu(model, layout.tp) * model.head_dim * precision.kv_bytes_per_element


def activation_peak_bytes(model: ModelShape, precision: Precision, layout: Layout, engine: EngineArgs,
                          coefficients: Coefficients) -> float:
    """Peak activation memory of vLLM's profile run: a forward pass of max_num_batched_tokens tokens plus the
    dummy sampler's fp32 logits for max_num_seqs rows (on the last stage)."""
    intermediate = model.intermediate_size * max(1, model.num_experts_per_tok if model.num_experts else 1)
    per_token = (model.hidden_size + intermediate / layout.tp) * precision.activation_bytes
    forward = coefficients.activation_bytes_per_token * per_token * engine.max_num_batched_tokens
    logits = engine.max_num_seqs * model.vocab_size / layout.tp * SAMPLER_LOGIT_BYTES
    return forward + logits


@dataclass(frozen=True, kw_only=True)
class MemoryPlan:
    """Per-GPU memory of one replica (bytes) and the KV cache it leaves, in vLLM's terms."""

    total_bytes: float
    budget_bytes: float  # gpu_memory_utilization * total
    weights_bytes: float
    activation_bytes: float
    non_torch_bytes: float
    cuda_graph_bytes: float  # captured after sizing, outside the budget
    kv_cache_bytes: float
    kv_bytes_per_token: float
    num_gpu_blocks: int
    kv_cache_tokens: int  # per replica, as vLLM logs "GPU KV cache size"
    max_model_len: int
    max_concurrency: float  # requests of max_model_len tokens the cache holds at once
    fits: bool
    reason: str  # why it does not fit ('' when it fits)


def memory_plan(model: ModelShape, cluster: ClusterSpec, layout: Layout, precision: Precision,
                engine: EngineArgs, coefficients: Coefficients) -> MemoryPlan:
    """The memory of the most loaded GPU of a replica and the KV cache vLLM would allocate."""
    total = float(cluster.gpu.memory_bytes)
    budget = engine.gpu_memory_utilization * total
    weights = weight_bytes_per_gpu(model, precision, layout)
    activation = activation_peak_bytes(model, precision, layout, engine, coefficients)
    non_torch = coefficients.non_torch_memory_bytes
    graphs = 0.0 if engine.enforce_eager else coefficients.cuda_graph_memory_bytes
    kv_bytes = budget - weights - activation - non_torch
    per_token = kv_bytes_per_token_per_gpu(model, precision, layout)
    block_bytes = per_token * engine.block_size
    blocks = max(0, int(kv_bytes // block_bytes))
    tokens = blocks * engine.block_size
    max_len = engine.max_model_len or model.max_position_embeddings
    per_request = _kv_tokens_per_request(model, max_len)
    concurrency = tokens / per_request if per_request else 0.0
    reason = ""
    if weights > budget:
        reason = f"weights need {weights / GIB:.1f} GiB/GPU, budget is {budget / GIB:.1f} GiB"
    elif blocks == 0:
        reason = (f"no KV cache left: weights {weights / GIB:.1f} + activations {activation / GIB:.1f} GiB "
                  f"of a {budget / GIB:.1f} GiB budget")
    elif tokens < max_len:
        reason = f"KV cache holds {tokens} tokens, fewer than max_model_len {max_len}"
    return MemoryPlan(total_bytes=total, budget_bytes=budget, weights_bytes=weights, activation_bytes=activation,
                      non_torch_bytes=non_torch, cuda_graph_bytes=graphs, kv_cache_bytes=max(kv_bytes, 0.0),
                      kv_bytes_per_token=per_token, num_gpu_blocks=blocks, kv_cache_tokens=tokens,
                      max_model_len=max_len, max_concurrency=concurrency, fits=not reason, reason=reason)


def _kv_tokens_per_request(model: ModelShape, length: int) -> float:
    """Cache tokens (in full-attention-layer equivalents) one request of ``length`` tokens occupies: sliding
    layers keep only the window."""
    if not model.sliding_window or not any(model.layer_is_sliding):
        return float(length)
    sliding = sum(model.layer_is_sliding)
    full = model.num_layers - sliding
    return (full * length + sliding * min(length, model.sliding_window)) / model.num_layers
