"""Inter-token latency bookkeeping of one simulation, shared by the schedulers of every replica (`ItlRecorder`)."""

from __future__ import annotations

from array import array

import numpy as np


class ItlRecorder:
    """Inter-token latencies without a Python object per token: (gap_s, number of tokens with that gap).

    Single gaps are appended as numbers; a run of back-to-back steps is kept as its end times (the gaps are
    `end[0] - previous emission`, then the differences of consecutive ends), turned into gaps at the end.
    """

    __slots__ = ("gap_s", "count", "run_end_s", "run_prev_s", "run_count")

    def __init__(self) -> None:
        # typed arrays, not lists: a gap is stored as 8 bytes, not a float object freed later, and numpy reads them
        # without a conversion (millions of gaps in a long run)
        self.gap_s = array("d")
        self.count = array("q")
        self.run_end_s: list[np.ndarray] = []
        self.run_prev_s: list[float] = []
        self.run_count: list[int | np.ndarray] = []

    def add(self, gap_s: float, count: int) -> None:
        self.gap_s.append(gap_s)
        self.count.append(count)

    def add_run(self, prev_emit_s: float, end_s: np.ndarray, count: int | np.ndarray) -> None:
        """Steps ending at `end_s`, after tokens emitted at `prev_emit_s`; `count` tokens per step (one number
        for all steps or one per step)."""
        self.run_end_s.append(end_s)
        self.run_prev_s.append(prev_emit_s)
        self.run_count.append(count)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        gaps = [np.asarray(self.gap_s, dtype=np.float64)]
        counts = [np.asarray(self.count, dtype=np.int64)]
        if self.run_end_s:
            ends = np.concatenate(self.run_end_s)
            lengths = np.fromiter((len(e) for e in self.run_end_s), dtype=np.int64, count=len(self.run_end_s))
            starts = np.cumsum(lengths) - lengths
            prev = np.empty_like(ends)
            prev[1:] = ends[:-1]
            prev[starts] = self.run_prev_s
            gaps.append(ends - prev)
            scalar = [c if isinstance(c, (int, np.integer)) else 0 for c in self.run_count]
            run_counts = np.repeat(np.asarray(scalar, dtype=np.int64), lengths)
            for start, length, c in zip(starts.tolist(), lengths.tolist(), self.run_count):
                if not isinstance(c, (int, np.integer)):
                    run_counts[start:start + length] = c
            counts.append(run_counts)
        return np.concatenate(gaps), np.concatenate(counts)

    def clear(self) -> None:
        """Forget what was recorded (after it was taken with `arrays`); the arrays and lists are emptied in place."""
        del self.gap_s[:], self.count[:]
        for values in (self.run_end_s, self.run_prev_s, self.run_count):
            values.clear()
