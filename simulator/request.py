"""Requests given to the simulator and the per-request results it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pandas is imported where it is used: it costs ~0.4 s at start-up
    import pandas as pd


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request: it arrives at `arrival_s`, has a prompt and asks for a fixed number of tokens
    (vLLM benchmark semantics: `ignore_eos`, so exactly `num_output_tokens` are generated).

    `num_shared_prefix_tokens`: how many leading prompt tokens are the prefix every request with a nonzero value
    shares (one prefix per simulation); 0 = none. Below `num_prompt_tokens`. Only read with prefix caching on.
    """

    id: int
    arrival_s: float
    num_prompt_tokens: int
    num_output_tokens: int
    num_shared_prefix_tokens: int = 0

    def __post_init__(self) -> None:
        if self.num_prompt_tokens < 1:
            raise ValueError(f"request {self.id}: num_prompt_tokens must be >= 1, got {self.num_prompt_tokens}")
        if self.num_output_tokens < 1:
            raise ValueError(f"request {self.id}: num_output_tokens must be >= 1, got {self.num_output_tokens}")
        if not 0 <= self.num_shared_prefix_tokens < self.num_prompt_tokens:
            raise ValueError(f"request {self.id}: num_shared_prefix_tokens must be >= 0 and below num_prompt_tokens "
                             f"({self.num_prompt_tokens}), got {self.num_shared_prefix_tokens}")
        if not self.arrival_s >= 0.0:
            raise ValueError(f"request {self.id}: arrival_s must be >= 0, got {self.arrival_s}")


def requests_from_arrays(arrival_s: Sequence[float], num_prompt_tokens: Sequence[int],
                         num_output_tokens: Sequence[int]) -> list[Request]:
    """Requests with ids 0..n-1 from three equally long sequences."""
    arrival = np.asarray(arrival_s, dtype=np.float64)
    prompt = np.asarray(num_prompt_tokens, dtype=np.int64)
    output = np.asarray(num_output_tokens, dtype=np.int64)
    if not (len(arrival) == len(prompt) == len(output)):
        raise ValueError("arrival_s, num_prompt_tokens and num_output_tokens must have the same length")
    return [Request(i, a, p, o) for i, (a, p, o) in
            enumerate(zip(arrival.tolist(), prompt.tolist(), output.tolist()))]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestResults:
    """Per-request outcome, one array element per request in the order given to `simulate`.

    Times are absolute simulated seconds. `sent_s` is when the client sent the request (its arrival time, or
    later when `max_concurrency` made it wait); latencies are measured from `sent_s` as vLLM's benchmark does.
    `first_token_s` is when the first output token was sampled (end of the step holding the prompt's last
    chunk, after the last pipeline stage); `finish_s` is when the last output token was sampled.
    """

    id: np.ndarray
    arrival_s: np.ndarray
    sent_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    num_prompt_tokens: np.ndarray
    num_output_tokens: np.ndarray
    replica: np.ndarray
    num_preemptions: np.ndarray

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.sent_s

    @property
    def e2e_s(self) -> np.ndarray:
        return self.finish_s - self.sent_s

    @property
    def tpot_s(self) -> np.ndarray:
        """(e2e - ttft) / (output - 1); NaN for single-token outputs (vLLM leaves those out)."""
        out = self.num_output_tokens.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(out > 1, (self.finish_s - self.first_token_s) / (out - 1), np.nan)

    def __len__(self) -> int:
        return len(self.id)

    def to_dataframe(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame({
            "id": self.id, "arrival_s": self.arrival_s, "sent_s": self.sent_s,
            "first_token_s": self.first_token_s, "finish_s": self.finish_s,
            "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "e2e_s": self.e2e_s,
            "num_prompt_tokens": self.num_prompt_tokens, "num_output_tokens": self.num_output_tokens,
            "replica": self.replica, "num_preemptions": self.num_preemptions,
        })


class RequestTable:
    """Mutable per-request state of one simulation, as flat Python lists indexed by slot (fast to index; no
    object per request). Internal to the simulator; `results()` freezes it into `RequestResults`.

    Built from a list of requests, slot i is request i for the whole run. Built empty, requests are `add`ed as
    they arrive and their slot is `release`d when they finish and their metrics are taken, for a later arrival
    to reuse: the table then holds only the requests in the system, however long the run."""

    __slots__ = ("ids", "arrival_s", "num_prompt_tokens", "num_output_tokens", "finish_kv_tokens", "sent_s",
                 "first_token_s", "finish_s", "replica", "num_preemptions", "last_emit_s", "num_computed_tokens",
                 "num_target_tokens", "admission_order", "num_shared_prefix_tokens", "num_shared_blocks",
                 "position", "_free")

    def __init__(self, requests: Sequence[Request] = ()) -> None:
        n = len(requests)
        self.ids = [r.id for r in requests]
        self.arrival_s = [float(r.arrival_s) for r in requests]
        self.num_prompt_tokens = [int(r.num_prompt_tokens) for r in requests]
        self.num_output_tokens = [int(r.num_output_tokens) for r in requests]
        # KV length at the last token: the last sampled token is never computed.
        self.finish_kv_tokens = [p + o - 1 for p, o in zip(self.num_prompt_tokens, self.num_output_tokens)]
        nan = float("nan")
        self.sent_s = [nan] * n
        self.first_token_s = [nan] * n
        self.finish_s = [nan] * n
        self.replica = [-1] * n
        self.num_preemptions = [0] * n
        self.last_emit_s = [nan] * n          # when the latest token was sampled (kept for preempted requests)
        self.num_computed_tokens = [0] * n    # KV length of waiting/prefilling requests (decoders: in cohorts)
        self.num_target_tokens = list(self.num_prompt_tokens)  # tokens to prefill: prompt (+ output on recompute)
        self.admission_order = [0] * n        # position in the running list (vLLM's `running` order)
        self.num_shared_prefix_tokens = [int(r.num_shared_prefix_tokens) for r in requests]
        self.num_shared_blocks = [0] * n      # KV blocks a request uses but does not own (prefix cache hits)
        self.position = list(range(n))        # the request's position in the simulation's input
        self._free: list[int] = []            # released slots

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, position: int, request_id: int, arrival_s: float, num_prompt_tokens: int, num_output_tokens: int,
            num_shared_prefix_tokens: int) -> int:
        """A request enters the system; returns its slot (a released one if any). (Written out field by field:
        this runs once per request.)"""
        nan = float("nan")
        if not self._free:
            for column in (self.sent_s, self.first_token_s, self.finish_s, self.last_emit_s, self.ids,
                           self.arrival_s, self.num_prompt_tokens, self.num_output_tokens, self.finish_kv_tokens,
                           self.replica, self.num_preemptions, self.num_computed_tokens, self.num_target_tokens,
                           self.admission_order, self.num_shared_prefix_tokens, self.num_shared_blocks,
                           self.position):
                column.append(0)
            self._free.append(len(self.ids) - 1)
        slot = self._free.pop()
        self.ids[slot] = request_id
        self.arrival_s[slot] = arrival_s
        self.num_prompt_tokens[slot] = num_prompt_tokens
        self.num_output_tokens[slot] = num_output_tokens
        self.finish_kv_tokens[slot] = num_prompt_tokens + num_output_tokens - 1
        self.sent_s[slot] = self.first_token_s[slot] = self.finish_s[slot] = self.last_emit_s[slot] = nan
        self.replica[slot] = -1
        self.num_preemptions[slot] = self.num_computed_tokens[slot] = self.admission_order[slot] = 0
        self.num_shared_blocks[slot] = 0
        self.num_target_tokens[slot] = num_prompt_tokens
        self.num_shared_prefix_tokens[slot] = num_shared_prefix_tokens
        self.position[slot] = position
        return slot

    def release(self, slot: int) -> None:
        """The request of `slot` has left the system (its results taken): the slot may be reused."""
        self._free.append(slot)

    def results(self) -> RequestResults:
        return RequestResults(
            id=np.asarray(self.ids), arrival_s=np.asarray(self.arrival_s), sent_s=np.asarray(self.sent_s),
            first_token_s=np.asarray(self.first_token_s), finish_s=np.asarray(self.finish_s),
            num_prompt_tokens=np.asarray(self.num_prompt_tokens, dtype=np.int64),
            num_output_tokens=np.asarray(self.num_output_tokens, dtype=np.int64),
            replica=np.asarray(self.replica, dtype=np.int64),
            num_preemptions=np.asarray(self.num_preemptions, dtype=np.int64))
