"""Parallel layouts (TP x PP x DP) of N GPUs, their validity for a model and their placement on nodes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from perfmodel.errors import UserError


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Tensor-parallel size, pipeline stages and data-parallel replicas; one replica uses tp*pp GPUs."""

    tp: int
    pp: int = 1
    dp: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    def __str__(self) -> str:
        return f"TP{self.tp} PP{self.pp} DP{self.dp}"


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where a replica's GPUs sit: whether a TP group or the pipeline crosses nodes."""

    nodes_per_replica: int
    tp_spans_nodes: bool
    pp_spans_nodes: bool


def valid_tp_sizes(num_attention_heads: int, num_kv_heads: int, limit: int) -> list[int]:
    """TP sizes vLLM accepts: TP divides the attention heads, and KV heads divide TP or TP divides them."""
    return [tp for tp in range(1, limit + 1)
            if num_attention_heads % tp == 0 and (num_kv_heads % tp == 0 or tp % num_kv_heads == 0)]


def check_tp(tp: int, num_attention_heads: int, num_kv_heads: int) -> None:
    if tp not in valid_tp_sizes(num_attention_heads, num_kv_heads, tp):
        valid = valid_tp_sizes(num_attention_heads, num_kv_heads, 64)
        raise UserError(f"--tensor-parallel-size {tp} does not divide the model's {num_attention_heads} attention "
                        f"heads ({num_kv_heads} KV heads); valid values: {', '.join(map(str, valid))}")


def place(layout: Layout, gpus_per_node: int) -> Placement:
    """TP groups stay inside a node unless TP is larger than a node; pipeline stages fill nodes in order."""
    nodes = math.ceil(layout.gpus_per_replica / gpus_per_node)
    return Placement(nodes_per_replica=nodes, tp_spans_nodes=layout.tp > gpus_per_node,
                     pp_spans_nodes=nodes > 1 and layout.tp <= gpus_per_node)


def enumerate_layouts(num_gpus: int, *, num_attention_heads: int, num_kv_heads: int, num_layers: int,
                      gpus_per_node: int) -> list[Layout]:
    """Every (TP, PP, DP) with TP*PP*DP = num_gpus that vLLM can run for this model.

    A replica must fit in whole nodes when it spans several (tp*pp a multiple of gpus_per_node) or inside one
    node otherwise, so that replicas do not share a node unevenly.
    """
    if num_gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {num_gpus}")
    layouts = []
    for tp in valid_tp_sizes(num_attention_heads, num_kv_heads, num_gpus):
        for pp in range(1, min(num_layers, num_gpus // tp) + 1):
            per_replica = tp * pp
            if num_gpus % per_replica:
                continue
            if per_replica > gpus_per_node and per_replica % gpus_per_node:
                continue
            if per_replica < gpus_per_node and gpus_per_node % per_replica:
                continue
            layouts.append(Layout(tp=tp, pp=pp, dp=num_gpus // per_replica))
    return layouts
