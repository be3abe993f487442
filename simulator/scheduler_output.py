"""What one continuous-batching step computes (`SchedulerOutput`), as the scheduler hands it to the engine."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.batch import BatchStats
from simulator.cohort import DecodeCohort


@dataclass(frozen=True, slots=True)
class SchedulerOutput:
    """What one step computes. `cohorts` decode one token per member; prompt chunks are listed by request."""

    batch: BatchStats
    cohorts: tuple[DecodeCohort, ...]
    num_decode_seqs: int
    prefill_ids: tuple[int, ...]
    prefill_new_tokens: tuple[int, ...]
    preempted_ids: tuple[int, ...]

    @property
    def is_empty(self) -> bool:
        return self.num_decode_seqs == 0 and not self.prefill_ids

    @property
    def is_pure_decode(self) -> bool:
        """Only decodes, nothing preempted: the next steps repeat this one until something changes."""
        return self.num_decode_seqs > 0 and not self.prefill_ids and not self.preempted_ids

