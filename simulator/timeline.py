"""Per-step accounting: always-on totals (steps, batch sizes, KV usage) and, when asked, the full timeline."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Callable

import numpy as np

from simulator.batch import BatchStats

if TYPE_CHECKING:  # pandas is imported where it is used: it costs ~0.4 s at start-up
    import pandas as pd

_BATCH_FIELDS = tuple(f.name for f in fields(BatchStats))
_COLUMNS = ("replica", "start_s", "end_s", "stage_time_s", *_BATCH_FIELDS, "num_running", "num_waiting",
            "kv_usage")


class StepRecorder:
    """Totals over every step of every replica; with `record=True` also one row per step.

    `stage_time_s` is what the step cost returned (one pipeline stage); `end_s` is when the step's tokens were
    sampled (after the last stage). KV usage is the fraction of the replica's blocks in use while the step runs
    (after its allocation); its mean is over steps (vLLM samples its usage gauge once per step), kept as an
    integer sum of blocks so that stepping one at a time or in runs gives identical numbers.
    """

    def __init__(self, record: bool, num_kv_blocks: int) -> None:
        self.record = record
        self.num_kv_blocks = num_kv_blocks
        self.num_steps = 0
        self.sum_num_seqs = 0
        self.kv_used_blocks_sum = 0
        self.kv_used_blocks_max = 0
        self.padding_tokens = 0
        self.computed_tokens = 0
        self._chunks: dict[str, list] = {c: [] for c in _COLUMNS}

    @property
    def kv_usage_mean(self) -> float:
        return self.kv_used_blocks_sum / (self.num_steps * self.num_kv_blocks) if self.num_steps else 0.0

    @property
    def kv_usage_max(self) -> float:
        return self.kv_used_blocks_max / self.num_kv_blocks

    def add_step(self, replica: int, start_s: float, end_s: float, stage_time_s: float, batch: BatchStats,
                 num_running: int, num_waiting: int, kv_used_blocks: int) -> None:
        self.num_steps += 1
        self.sum_num_seqs += batch.num_seqs
        self.kv_used_blocks_sum += kv_used_blocks
        if kv_used_blocks > self.kv_used_blocks_max:
            self.kv_used_blocks_max = kv_used_blocks
        if self.record:
            self._append(replica=replica, start_s=start_s, end_s=end_s, stage_time_s=stage_time_s,
                         num_running=num_running, num_waiting=num_waiting,
                         kv_usage=kv_used_blocks / self.num_kv_blocks, **batch.to_dict())

    def add_steps(self, replica: int, start_s: float, end_s: np.ndarray, stage_time_s: np.ndarray,
                  batch: BatchStats | None, num_running: int | np.ndarray | None, num_waiting: int, *,
                  sum_num_seqs: int, kv_used_blocks_sum: int, kv_used_blocks_max: int,
                  kv_used_blocks: Callable[[], np.ndarray]) -> None:
        """`len(end_s)` back-to-back steps starting at `start_s` (`batch`, `stage_time_s` may be longer and
        are cut). `kv_used_blocks()` gives the per-step blocks in use; it, `batch` and `num_running` are used only
        when recording (they may be None otherwise)."""
        k = len(end_s)
        self.num_steps += k
        self.sum_num_seqs += sum_num_seqs
        self.kv_used_blocks_sum += kv_used_blocks_sum
        if kv_used_blocks_max > self.kv_used_blocks_max:
            self.kv_used_blocks_max = kv_used_blocks_max
        if self.record:
            cut = {name: np.asarray(value)[:k] for name, value in batch.to_dict().items()}
            self._append(replica=np.full(k, replica), start_s=np.concatenate(([start_s], end_s[:-1])),
                         end_s=end_s, stage_time_s=stage_time_s[:k],
                         num_running=np.broadcast_to(np.asarray(num_running)[:k] if np.ndim(num_running) else
                                                     num_running, (k,)),
                         num_waiting=np.full(k, num_waiting), kv_usage=kv_used_blocks() / self.num_kv_blocks,
                         **cut)

    def _append(self, **values) -> None:
        for name, value in values.items():
            self._chunks[name].append(value)

    def _column(self, name: str) -> np.ndarray:
        parts = [np.atleast_1d(v) for v in self._chunks[name]]
        return np.concatenate(parts) if parts else np.zeros(0)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd
        """One row per step, sorted by start time then replica."""
        frame = pd.DataFrame({c: self._column(c) for c in _COLUMNS})
        return frame.sort_values(["start_s", "replica"], kind="stable").reset_index(drop=True)

    @staticmethod
    def batch_stats(frame: pd.DataFrame) -> BatchStats:
        """Every step of a timeline as one array-valued BatchStats (re-cost it with another StepCost)."""
        return BatchStats(**{name: frame[name].to_numpy() for name in _BATCH_FIELDS})

