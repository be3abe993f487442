"""Workloads: token-length distributions, arrival processes, traces.

Every random draw takes an explicit `numpy.random.Generator`; nothing here touches global state.

Arrivals follow vLLM's `benchmark_serving`: at `request_rate = inf` every request is sent at t = 0 (offline);
otherwise gaps between requests are gamma distributed with shape `burstiness` and mean `1 / request_rate`
(burstiness 1 = Poisson; < 1 burstier; > 1 more regular). The first request is sent at t = 0.
A closed loop of C clients is offline arrivals with `simulate(..., max_concurrency=C)`.

Traces: CSV with a header, or JSON lines, one request per row with an arrival time and the two lengths; the
project's column names and the Azure LLM inference and BurstGPT formats are read by `simulator.traces`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulator.request import Request, requests_from_arrays
from simulator.stream import DEFAULT_CHUNK, RequestChunk, RequestStream
from simulator.traces import read_table, read_trace

_KINDS = ("fixed", "uniform", "normal", "lognormal", "empirical")


@dataclass(frozen=True, slots=True, kw_only=True)
class LengthDistribution:
    """A distribution of token counts; samples are rounded and clipped to [min_tokens, max_tokens].

    kind: "fixed" (mean), "uniform" (integers in [low, high]), "normal" (mean, std), "lognormal" (parametrised
    by its mean and the std `sigma` of the underlying normal: mu = ln(mean) - sigma^2 / 2), "empirical"
    (resample `values` uniformly with replacement).
    """

    kind: str
    mean: float = 0.0
    std: float = 0.0
    sigma: float = 0.0
    low: int = 1
    high: int = 1
    values: tuple[int, ...] = field(default=())
    min_tokens: int = 1
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown length distribution {self.kind!r}; choose one of {', '.join(_KINDS)}")
        if self.kind in ("fixed", "normal", "lognormal") and not self.mean >= 1:
            raise ValueError(f"{self.kind} lengths need mean >= 1, got {self.mean}")
        if self.kind == "uniform" and not 1 <= self.low <= self.high:
            raise ValueError(f"uniform lengths need 1 <= low <= high, got [{self.low}, {self.high}]")
        if self.kind == "empirical" and not self.values:
            raise ValueError("empirical lengths need at least one value")
        if self.std < 0 or self.sigma < 0:
            raise ValueError("std and sigma must be >= 0")
        if self.min_tokens < 1 or (self.max_tokens is not None and self.max_tokens < self.min_tokens):
            raise ValueError("need 1 <= min_tokens <= max_tokens")

    @classmethod
    def fixed(cls, tokens: int) -> "LengthDistribution":
        return cls(kind="fixed", mean=tokens)

    @classmethod
    def uniform(cls, low: int, high: int) -> "LengthDistribution":
        return cls(kind="uniform", low=low, high=high)

    @classmethod
    def normal(cls, mean: float, std: float, **clip) -> "LengthDistribution":
        return cls(kind="normal", mean=mean, std=std, **clip)

    @classmethod
    def lognormal(cls, mean: float, sigma: float, **clip) -> "LengthDistribution":
        return cls(kind="lognormal", mean=mean, sigma=sigma, **clip)

    @classmethod
    def from_file(cls, path: str | Path, column: str | None = None) -> "LengthDistribution":
        """Empirical lengths: a text file with one integer per line, or a CSV/JSONL column."""
        path = Path(path)
        if column is None:
            values = [int(line) for line in path.read_text().split() if line.strip()]
        else:
            values = read_table(path)[column].astype(int).tolist()
        return cls(kind="empirical", values=tuple(values))

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "fixed":
            x = np.full(num, self.mean)
        elif self.kind == "uniform":
            x = rng.integers(self.low, self.high + 1, size=num)
        elif self.kind == "normal":
            x = rng.normal(self.mean, self.std, size=num)
        elif self.kind == "lognormal":
            x = rng.lognormal(math.log(self.mean) - self.sigma ** 2 / 2, self.sigma, size=num)
        else:
            x = rng.choice(np.asarray(self.values), size=num, replace=True)
        hi = self.max_tokens if self.max_tokens is not None else np.iinfo(np.int64).max
        return np.clip(np.rint(x), self.min_tokens, hi).astype(np.int64)


def arrival_times(num: int, rng: np.random.Generator, *, request_rate: float = math.inf,
                  burstiness: float = 1.0) -> np.ndarray:
    """Send times (s) of `num` requests: all 0 at an infinite rate, else gamma gaps (see the module docstring)."""
    if not request_rate > 0:
        raise ValueError(f"request_rate must be > 0, got {request_rate}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if math.isinf(request_rate):
        return np.zeros(num)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=max(num - 1, 0))
    return np.concatenate(([0.0], np.cumsum(gaps)))[:num]


def make_requests(num_prompts: int, input_len: LengthDistribution, output_len: LengthDistribution,
                  rng: np.random.Generator, *, request_rate: float = math.inf,
                  burstiness: float = 1.0) -> list[Request]:
    """`num_prompts` requests with sampled lengths and arrivals (lengths first, then arrivals)."""
    if num_prompts < 1:
        raise ValueError("num_prompts must be >= 1")
    prompts = input_len.sample(num_prompts, rng)
    outputs = output_len.sample(num_prompts, rng)
    arrivals = arrival_times(num_prompts, rng, request_rate=request_rate, burstiness=burstiness)
    return requests_from_arrays(arrivals, prompts, outputs)


def stream_requests(num_prompts: int, input_len: LengthDistribution, output_len: LengthDistribution, *,
                    length_seed, arrival_seed, request_rate: float = math.inf, burstiness: float = 1.0,
                    max_model_len: int | None = None, num_shared_prefix_tokens: int = 0,
                    chunk_size: int = DEFAULT_CHUNK) -> RequestStream:
    """`num_prompts` requests drawn lazily, chunk by chunk: the same numbers as drawing them all at once with
    `np.random.default_rng(length_seed)` (all prompt lengths, then all output lengths) and arrivals from
    `np.random.default_rng(arrival_seed)` (`arrival_times`). A Generator's draws of one distribution do not
    depend on how they are split into calls, so the output lengths come from a second generator of the same seed
    that first draws (and drops) every prompt length. With `max_model_len`, prompts are cut to
    `max_model_len - 1` tokens and outputs to what is left."""
    if num_prompts < 1:
        raise ValueError("num_prompts must be >= 1")
    if not request_rate > 0:
        raise ValueError(f"request_rate must be > 0, got {request_rate}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")

    def lengths(rng: np.random.Generator, size: int) -> np.ndarray:
        return input_len.sample(size, rng)

    def chunks():
        prompt_rng = np.random.default_rng(length_seed)
        output_rng = np.random.default_rng(length_seed)
        for start in range(0, num_prompts, chunk_size):  # skip the prompt lengths
            lengths(output_rng, min(chunk_size, num_prompts - start))
        arrival_rng = np.random.default_rng(arrival_seed)
        last = 0.0
        for start in range(0, num_prompts, chunk_size):
            size = min(chunk_size, num_prompts - start)
            prompts = lengths(prompt_rng, size)
            outputs = output_len.sample(size, output_rng)
            if math.isinf(request_rate):
                arrivals = np.zeros(size)
            else:
                # the first request at 0, then gamma gaps added one by one as arrival_times' cumsum adds them
                num_gaps = size - 1 if start == 0 else size
                gaps = arrival_rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=num_gaps)
                arrivals = np.cumsum(np.concatenate(([last], gaps)))
                if start:
                    arrivals = arrivals[1:]
                last = float(arrivals[-1])
            if max_model_len is not None:
                prompts = np.minimum(prompts, max_model_len - 1)
                outputs = np.minimum(outputs, max_model_len - prompts)
            position = np.arange(start, start + size, dtype=np.int64)
            yield RequestChunk(position, position, arrivals, prompts, outputs,
                               np.full(size, num_shared_prefix_tokens, dtype=np.int64))

    return RequestStream(num_prompts, chunks)


def load_trace(path: str | Path, fmt: str = "auto", *, start_s: float = 0.0,
               duration_s: float = math.inf) -> list[Request]:
    """Requests from a trace file (`simulator.traces`: the project's CSV/JSONL, the Azure LLM inference trace or
    BurstGPT format, `fmt` "auto" telling them by their columns), arrivals from the first request or from the
    window [start_s, start_s + duration_s) seconds after it."""
    arrival, prompt, output = read_trace(path, fmt, start_s=start_s, duration_s=duration_s)
    return requests_from_arrays(arrival, prompt, output)
