"""What `vllm serve` adds to an engine step (docs/online-model.md): the CPU floor of steps without CUDA graphs.

vLLM 0.26 runs a V1 step under a CUDA graph only up to ``max_cudagraph_capture_size`` tokens (vllm/config/vllm.py
VllmConfig: min(2 x max_num_seqs, 512), at most max_num_batched_tokens; vllm/v1/cudagraph_dispatcher.py
CudagraphDispatcher.dispatch returns NONE above it). A larger step launches every kernel of the compiled model
from Python, and takes at least that CPU time: under serving load the typical such step is one new prompt of a
few hundred tokens mixed with the running decodes, whose GPU time is short enough for the launches to show.
The floor is fitted on online runs only; the offline profile's steps are priced without it (its big prefill steps
are GPU-bound, and its fit already absorbed what its own graphless steps cost).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perfmodel.engine.args import EngineArgs

# vLLM 0.26 vllm/config/vllm.py: max_cudagraph_capture_size = min(max_num_seqs * 2, 512) when not given
_LARGEST_CAPTURE_TOKENS = 512


def max_cuda_graph_tokens(engine: EngineArgs) -> int:
    """The most tokens a V1 step may hold and still replay a CUDA graph (0 with --enforce-eager)."""
    if engine.enforce_eager:
        return 0
    return min(2 * engine.max_num_seqs, _LARGEST_CAPTURE_TOKENS, engine.max_num_batched_tokens)


class GraphlessFloorStepCost:
    """A step cost whose steps of more than ``max_graph_tokens`` tokens take at least ``floor_s`` (same stages)."""

    def __init__(self, cost: Any, floor_s: float, max_graph_tokens: int) -> None:
        self.cost, self.floor_s, self.max_graph_tokens = cost, float(floor_s), int(max_graph_tokens)
        self.num_stages = cost.num_stages

    def __call__(self, batch: Any) -> Any:
        seconds = self.cost(batch)
        if type(batch.num_seqs) is int:  # one step (the simulator asks millions): no arrays
            tokens = batch.num_prefill_tokens + batch.num_decode_tokens
            return max(seconds, self.floor_s) if tokens > self.max_graph_tokens else seconds
        tokens = np.asarray(batch.num_prefill_tokens) + np.asarray(batch.num_decode_tokens)
        if np.ndim(seconds) == 0:
            return max(seconds, self.floor_s) if tokens > self.max_graph_tokens else seconds
        return np.where(tokens > self.max_graph_tokens, np.maximum(seconds, self.floor_s), seconds)
