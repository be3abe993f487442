"""Static batching: fixed batches padded to the longest prompt and the longest output.

A batch takes up to `static_batch_size` waiting requests (FCFS; fewer when fewer are waiting, or when the padded
batch would not fit in the KV cache) as soon as the replica is free; it never waits to fill up. Then:

- one prefill step over `n x max_prompt` tokens, all at once (one padded forward pass, not split at
  `max_num_batched_tokens`); every request samples its first token at its end;
- `max_output - 1` decode steps over all `n` slots, with every slot's context padded to
  `max_prompt + step`: a finished request's slot keeps costing until the whole batch ends;
- the next batch starts only after the last step. KV blocks for `n x (max_prompt + max_output - 1)` tokens
  are reserved for the whole batch.

Tokens are streamed: a request finishes (e2e) at the step of its own last token, not at the batch's end.
Padding waste = padded tokens computed / all tokens computed. With pipeline parallelism one batch is in flight,
so each step takes `num_stages x` the stage time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.batch import BatchStats
from simulator.config import EngineConfig
from simulator.itl import ItlRecorder
from simulator.kv_blocks import KVBlockPool, num_blocks_for_tokens
from simulator.request import RequestTable
from simulator.waiting_queue import WaitingQueue


@dataclass(frozen=True, slots=True)
class StaticBatch:
    """One static batch: its requests, its steps (array BatchStats; step 0 is the prefill) and its padding."""

    ids: tuple[int, ...]
    max_prompt_tokens: int
    max_output_tokens: int
    num_blocks: int
    batch: BatchStats
    num_padding_tokens: int
    num_computed_tokens: int


class StaticBatcher(WaitingQueue):
    """Forms static batches from a FCFS waiting queue and applies their results."""

    def __init__(self, config: EngineConfig, table: RequestTable, itl: ItlRecorder) -> None:
        self.config = config
        self.table = table
        self.itl = itl
        self.batch_size = config.effective_static_batch_size
        self.pool = KVBlockPool(config.num_kv_blocks, config.block_size)
        super().__init__()
        self.num_running = 0
        self.num_preemptions = 0

    def has_schedulable_work(self) -> bool:
        return bool(self.waiting)

    def next_batch(self) -> StaticBatch:
        t, bs = self.table, self.config.block_size
        ids: list[int] = []
        max_prompt = max_output = 0
        while self.waiting and len(ids) < self.batch_size:
            req = self.waiting[0]
            prompt = max(max_prompt, t.num_prompt_tokens[req])
            output = max(max_output, t.num_output_tokens[req])
            if (len(ids) + 1) * num_blocks_for_tokens(prompt + output - 1, bs) > self.pool.num_blocks and ids:
                break
            ids.append(self.waiting.popleft())
            max_prompt, max_output = prompt, output
        n = len(ids)
        num_blocks = n * num_blocks_for_tokens(max_prompt + max_output - 1, bs)
        assert self.pool.allocate_blocks(num_blocks), "a static batch does not fit in the KV cache"
        self.num_running = n

        steps = np.arange(max_output, dtype=np.int64)          # step 0: prefill, step j: decode j
        is_prefill = steps == 0
        num_prefill = np.where(is_prefill, n * max_prompt, 0)
        num_decode = np.where(is_prefill, 0, n)
        batch = BatchStats(
            num_prefill_tokens=num_prefill, num_decode_tokens=num_decode,
            prefill_attention_pairs=np.where(is_prefill, n * max_prompt * (max_prompt + 1) / 2, 0.0),
            prefill_context_tokens=num_prefill,
            decode_context_tokens=np.where(is_prefill, 0, n * (max_prompt + steps)),
            num_sampled_tokens=np.full(max_output, n, dtype=np.int64), num_seqs=np.full(max_output, n, dtype=np.int64))
        useful = sum(t.num_prompt_tokens[i] + t.num_output_tokens[i] - 1 for i in ids)
        computed = n * (max_prompt + max_output - 1)
        return StaticBatch(tuple(ids), max_prompt, max_output, num_blocks, batch, computed - useful, computed)

    def complete(self, sb: StaticBatch, end_s: np.ndarray) -> None:
        """Record first-token and finish times and inter-token gaps (`end_s`: end of each step)."""
        t = self.table
        outputs = np.asarray([t.num_output_tokens[i] for i in sb.ids], dtype=np.int64)
        first_s = float(end_s[0])
        for req, out in zip(sb.ids, outputs.tolist()):
            t.first_token_s[req] = first_s
            t.finish_s[req] = float(end_s[out - 1])
        if sb.max_output_tokens > 1:
            j = np.arange(1, sb.max_output_tokens)
            emitting = len(outputs) - np.searchsorted(np.sort(outputs - 1), j, side="left")
            self.itl.add_run(float(end_s[0]), end_s[1:], emitting)
        self.pool.free_blocks(sb.num_blocks)
        self.num_running = 0
