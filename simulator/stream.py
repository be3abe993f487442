"""Requests as a stream in arrival order, produced chunk by chunk (`RequestStream`): a workload of millions of
requests is never held whole, neither as `Request` objects nor as arrays.

A stream is re-iterable: `chunks()` starts it again from the beginning (a generated workload redraws the same
numbers from its seeds), so a caller may check the requests before simulating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from simulator.request import Request

DEFAULT_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class RequestChunk:
    """Consecutive requests of a stream, in arrival order (numpy arrays of equal length). `position`: each
    request's place in the simulation's input (its index in per-request results)."""

    position: np.ndarray
    id: np.ndarray
    arrival_s: np.ndarray
    num_prompt_tokens: np.ndarray
    num_output_tokens: np.ndarray
    num_shared_prefix_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.position)

    def validate(self) -> None:
        """The checks `Request` makes, on a whole chunk (the first bad row is named)."""
        for name, bad in (("num_prompt_tokens must be >= 1", self.num_prompt_tokens < 1),
                          ("num_output_tokens must be >= 1", self.num_output_tokens < 1),
                          ("num_shared_prefix_tokens must be >= 0 and below num_prompt_tokens",
                           (self.num_shared_prefix_tokens < 0)
                           | (self.num_shared_prefix_tokens >= self.num_prompt_tokens)),
                          ("arrival_s must be >= 0", ~(self.arrival_s >= 0.0))):
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"request {self.id[i]}: {name}")


class RequestStream:
    """`num_requests` requests in arrival order, from a function that yields them as `RequestChunk`s."""

    def __init__(self, num_requests: int, chunks: Callable[[], Iterator[RequestChunk]]) -> None:
        self.num_requests = int(num_requests)
        self._chunks = chunks

    def __len__(self) -> int:
        return self.num_requests

    def chunks(self) -> Iterator[RequestChunk]:
        return self._chunks()

    @classmethod
    def from_arrays(cls, arrival_s, num_prompt_tokens, num_output_tokens, num_shared_prefix_tokens=None,
                    ids=None, *, chunk_size: int = DEFAULT_CHUNK) -> "RequestStream":
        """Requests given as arrays in input order (ids 0..n-1 unless given); streamed sorted by arrival time,
        ties in input order (the order the client sends them)."""
        arrival = np.asarray(arrival_s, dtype=np.float64)
        n = len(arrival)
        prompt = np.asarray(num_prompt_tokens, dtype=np.int64)
        output = np.asarray(num_output_tokens, dtype=np.int64)
        prefix = (np.zeros(n, dtype=np.int64) if num_shared_prefix_tokens is None
                  else np.asarray(num_shared_prefix_tokens, dtype=np.int64))
        ident = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids)
        if not (len(prompt) == len(output) == len(prefix) == len(ident) == n):
            raise ValueError("the request arrays must have the same length")
        order = np.argsort(arrival, kind="stable")

        def chunks() -> Iterator[RequestChunk]:
            for start in range(0, n, chunk_size):
                take = order[start:start + chunk_size]
                yield RequestChunk(take, ident[take], arrival[take], prompt[take], output[take], prefix[take])

        return cls(n, chunks)

    @classmethod
    def from_requests(cls, requests: Sequence[Request], *, chunk_size: int = DEFAULT_CHUNK) -> "RequestStream":
        return cls.from_arrays([r.arrival_s for r in requests], [r.num_prompt_tokens for r in requests],
                               [r.num_output_tokens for r in requests],
                               [r.num_shared_prefix_tokens for r in requests], [r.id for r in requests],
                               chunk_size=chunk_size)

    def to_requests(self) -> list[Request]:
        """Every request as a `Request`, in input order (this holds the whole workload)."""
        out: list[Request | None] = [None] * self.num_requests
        for c in self.chunks():
            for p, i, a, n_in, n_out, k in zip(c.position.tolist(), c.id.tolist(), c.arrival_s.tolist(),
                                               c.num_prompt_tokens.tolist(), c.num_output_tokens.tolist(),
                                               c.num_shared_prefix_tokens.tolist()):
                out[p] = Request(i, a, n_in, n_out, k)
        return out  # type: ignore[return-value]
