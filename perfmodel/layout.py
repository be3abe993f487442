"""Parallel layouts (TP x PP x DP) of N GPUs, their validity for a model and their placement on nodes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from perfmodel.errors import UserError


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Tensor-parallel size, pipeline stages and data-parallel replicas; one replica uses tp*pp GPUs.

    ``ep``: expert-parallel size of a MoE model's expert layers, 1 (experts split over TP like the other weights)
    or ``tp * dp`` (vLLM's ``--enable-expert-parallel``: each of the TP x DP GPUs of a pipeline stage holds whole
    experts, vLLM 0.11.2 vllm/model_executor/layers/fused_moe/config.py FusedMoEParallelConfig.make: ep_size =
    the TP size flattened across DP, the experts' own TP size 1). One replica of such a layout (``dp=1``, as the
    simulator runs it) keeps ``ep``: ``ep // tp`` replicas share its experts.
    """

    tp: int
    pp: int = 1
    dp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "ep"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.ep > 1 and self.ep % self.tp:  # one replica's view (dp=1) of an EP group keeps the group's size
            raise UserError(f"expert parallelism spans TP x DP GPUs, a multiple of TP {self.tp}; got EP {self.ep}")

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    def __str__(self) -> str:
        return f"TP{self.tp} PP{self.pp} DP{self.dp}" + (f" EP{self.ep}" if self.ep > 1 else "")

    def with_expert_parallel(self) -> "Layout":
        """The same layout with EP = TP x DP."""
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp, ep=self.tp * self.dp)


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where a replica's GPUs sit: whether a TP group or the pipeline crosses nodes."""

    nodes_per_replica: int
    tp_spans_nodes: bool
    pp_spans_nodes: bool


def valid_tp_sizes(num_attention_heads: int, num_kv_heads: int, limit: int) -> list[int]:
    """TP sizes vLLM accepts: TP divides the attention heads (vLLM 0.7.0 vllm/config.py
    ModelConfig.verify_with_parallel_config), and KV heads divide TP (each KV head replicated on TP/KV GPUs) or
    TP divides them (vLLM 0.7.0 vllm/model_executor/layers/linear.py QKVParallelLinear.__init__)."""
    return [tp for tp in range(1, limit + 1)
            if num_attention_heads % tp == 0 and (num_kv_heads % tp == 0 or tp % num_kv_heads == 0)]


def check_tp(tp: int, num_attention_heads: int, num_kv_heads: int) -> None:
    if tp not in valid_tp_sizes(num_attention_heads, num_kv_heads, tp):
        valid = valid_tp_sizes(num_attention_heads, num_kv_heads, 64)
        raise UserError(f"--tensor-parallel-size {tp} does not divide the model's {num_attention_heads} attention "
                        f"heads ({num_kv_heads} KV heads); valid values: {', '.join(map(str, valid))}")


def place(layout: Layout, gpus_per_node: int) -> Placement:
    """Where one replica sits, the way :func:`enumerate_layouts` admits it.

    A replica of at most a node's GPUs sits in one node. A larger one with ``tp <= gpus_per_node`` keeps each
    pipeline stage (a TP group) inside a node, ``gpus_per_node // tp`` stages per node, so its pipeline crosses
    nodes. A TP group larger than a node spans whole nodes.
    """
    g = gpus_per_node
    if layout.gpus_per_replica <= g:
        nodes = 1
    elif layout.tp <= g:
        nodes = math.ceil(layout.pp / (g // layout.tp))
    else:
        nodes = math.ceil(layout.gpus_per_replica / g)
    return Placement(nodes_per_replica=nodes, tp_spans_nodes=layout.tp > g, pp_spans_nodes=nodes > 1 and layout.tp <= g)


def placeable(layout: Layout, gpus_per_node: int) -> bool:
    """Whether the replicas fit on the ``ceil(gpus / gpus_per_node)`` nodes of the job, all placed alike.

    Replicas of at most a node's GPUs are never split across nodes (each node holds ``g // (tp*pp)`` of
    them); larger ones keep every TP group inside a node (each node holds ``g // tp`` stages; vLLM itself
    only needs TP·PP·DP GPUs, but a TP all-reduce over the network is another layout); a TP group larger
    than a node takes whole nodes, and so does its replica. This is what lets one simulated replica stand
    for all of them (:func:`place`).
    """
    g = gpus_per_node
    num_nodes = math.ceil(layout.gpus / g)
    if layout.gpus_per_replica <= g:
        return layout.dp <= num_nodes * (g // layout.gpus_per_replica)
    if layout.tp <= g:
        return layout.dp * layout.pp <= num_nodes * (g // layout.tp)
    return layout.gpus_per_replica % g == 0


def enumerate_layouts(num_gpus: int, *, num_attention_heads: int, num_kv_heads: int, num_layers: int,
                      gpus_per_node: int, tp_across_nodes: bool = True) -> list[Layout]:
    """Every (TP, PP, DP) with TP*PP*DP = num_gpus that vLLM can run for this model and :func:`placeable`.

    PP may be any size up to ``num_layers``: vLLM gives every stage ``num_layers // pp`` layers and the
    remainder to some of them (vLLM 0.7.0 vllm/distributed/utils.py get_pp_indices: all to the last stage;
    vLLM 0.30: one each to the stages before the last), so a stage is never empty. ``tp_across_nodes=False``
    keeps every TP group inside a node (PP and DP may still cross nodes).
    """
    if num_gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {num_gpus}")
    layouts = []
    for tp in valid_tp_sizes(num_attention_heads, num_kv_heads, num_gpus):
        if tp > gpus_per_node and not tp_across_nodes:
            continue
        for pp in range(1, min(num_layers, num_gpus // tp) + 1):
            if num_gpus % (tp * pp):
                continue
            layout = Layout(tp=tp, pp=pp, dp=num_gpus // (tp * pp))
            if placeable(layout, gpus_per_node):
                layouts.append(layout)
    return layouts
