"""What one engine step computes (`BatchStats`) and the protocol of a step-cost function (`StepCost`).

The simulator never knows what hardware runs the step: it describes the step by token counts and asks a
`StepCost` for the seconds one pipeline stage needs. Every field may also be a numpy array (one element per
step): the simulator then asks for many steps at once and expects an array of seconds back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, Sequence, Union, runtime_checkable

import numpy as np

IntLike = Union[int, np.ndarray]
FloatLike = Union[float, np.ndarray]


@dataclass(frozen=True, slots=True)
class BatchStats:
    """One engine step, summed over the scheduled sequences (or many steps when the fields are arrays).

    For a prefill chunk of `new` tokens on top of `computed` tokens already in the KV cache, and a decoding
    sequence whose KV cache holds `computed` tokens (it computes token number `computed`, 0-based):

        num_prefill_tokens       sum new
        prefill_attention_pairs  sum new * (computed + (new + 1) / 2)   query-key pairs of causal attention
        prefill_context_tokens   sum computed + new                      KV tokens the chunk touches
        num_decode_tokens        number of decoding sequences (one token each)
        decode_context_tokens    sum computed + 1                        KV tokens read, the new one included
        num_sampled_tokens       decodes + prompts whose last chunk is in this step
        num_seqs                 sequences scheduled this step

    Static batching counts padding slots as real work (see `simulator.static_batching.StaticBatcher`).
    """

    num_prefill_tokens: IntLike
    num_decode_tokens: IntLike
    prefill_attention_pairs: FloatLike
    prefill_context_tokens: IntLike
    decode_context_tokens: IntLike
    num_sampled_tokens: IntLike
    num_seqs: IntLike

    @property
    def num_tokens(self) -> IntLike:
        """Tokens computed this step (prefill + decode): what `max_num_batched_tokens` limits."""
        return self.num_prefill_tokens + self.num_decode_tokens

    def __len__(self) -> int:
        """Number of steps described: 1 for scalar fields, the array length otherwise."""
        return int(np.size(self.num_seqs))

    @staticmethod
    def concat(parts: Sequence["BatchStats"]) -> "BatchStats":
        """One array-valued BatchStats from several (scalar or array) ones, in order."""
        names = [f.name for f in fields(BatchStats)]
        if not parts:
            return BatchStats(**{n: np.zeros(0, dtype=np.float64 if n == "prefill_attention_pairs" else np.int64)
                                 for n in names})
        return BatchStats(**{n: np.concatenate([np.atleast_1d(getattr(p, n)) for p in parts]) for n in names})

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(BatchStats)}


@runtime_checkable
class StepCost(Protocol):
    """Seconds one pipeline stage needs for a step; all stages are assumed equal.

    `num_stages` is the pipeline-parallel size (1 without PP). Called with array fields, it must return an
    array of the same length (elementwise evaluation). It must be a pure function of the batch: the open-loop
    driver caches its answers for scalar steps (`simulator.open_loop.MemoStepCost`). Optional, for the V0 virtual engines
    (`simulator.pipelining._virtual_engine`): `stage_split_s(batch)` -> (the CPU part of the stage time,
    spent before a stage needs the previous stage's output; what only the last stage spends; the time the last
    stage's result takes to reach the engine process, during which that stage takes no other batch). Optional, for
    async output processing (`EngineConfig.async_output_processing`): `cpu_time_s(batch)`, the seconds of a
    step's CPU work before its GPU work is under way (0 without it).
    """

    num_stages: int

    def __call__(self, batch: BatchStats) -> FloatLike: ...


@dataclass(frozen=True, slots=True)
class LinearStepCost:
    """A toy affine cost for tests and benchmarks (not a hardware model):

        t_s = fixed_s + per_prefill_token_s * num_prefill_tokens
              + per_decode_context_token_s * decode_context_tokens + per_decode_token_s * num_decode_tokens
    """

    fixed_s: float = 5e-3
    per_prefill_token_s: float = 2e-5
    per_decode_context_token_s: float = 1.5e-7
    per_decode_token_s: float = 5e-5
    num_stages: int = 1

    def __call__(self, batch: BatchStats) -> FloatLike:
        return (self.fixed_s + self.per_prefill_token_s * batch.num_prefill_tokens
                + self.per_decode_context_token_s * batch.decode_context_tokens
                + self.per_decode_token_s * batch.num_decode_tokens)
