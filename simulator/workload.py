"""Workloads: token-length distributions, arrival processes, traces.

Every random draw takes an explicit `numpy.random.Generator`; nothing here touches global state.

Arrivals follow vLLM's `benchmark_serving`: at `request_rate = inf` every request is sent at t = 0 (offline);
otherwise gaps between requests are gamma distributed with shape `burstiness` and mean `1 / request_rate`
(burstiness 1 = Poisson; < 1 burstier; > 1 more regular). The first request is sent at t = 0.
A closed loop of C clients is offline arrivals with `simulate(..., max_concurrency=C)`.

Traces: CSV with a header, or JSON lines, one request per row with an arrival time and the two lengths.
Column names accepted: arrival `arrival_s` | `timestamp_s` | `timestamp`; input `num_prompt_tokens` |
`input_len` | `prompt_len` | `input_tokens`; output `num_output_tokens` | `output_len` | `output_tokens`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from simulator.request import Request, requests_from_arrays
from simulator.stream import DEFAULT_CHUNK, RequestChunk, RequestStream

if TYPE_CHECKING:  # pandas is imported where it is used: it costs ~0.4 s at start-up
    import pandas as pd

_KINDS = ("fixed", "uniform", "normal", "lognormal", "empirical")
_ARRIVAL = ("arrival_s", "timestamp_s", "timestamp")
_INPUT = ("num_prompt_tokens", "input_len", "prompt_len", "input_tokens")
_OUTPUT = ("num_output_tokens", "output_len", "output_tokens")


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
            values = _read_table(path)[column].astype(int).tolist()
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


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd
    if path.suffix in (".jsonl", ".json"):
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return pd.read_csv(path)


def _pick(frame: pd.DataFrame, names: Sequence[str], path: Path) -> np.ndarray:
    for name in names:
        if name in frame.columns:
            return frame[name].to_numpy()
    raise ValueError(f"{path}: no column among {', '.join(names)}")


def load_trace(path: str | Path) -> list[Request]:
    """Requests from a CSV or JSONL trace (columns in the module docstring); arrivals shifted to start at 0."""
    path = Path(path)
    frame = _read_table(path)
    arrival = np.asarray(_pick(frame, _ARRIVAL, path), dtype=np.float64)
    if not np.isfinite(arrival).all():
        i = int(np.argmax(~np.isfinite(arrival)))
        raise ValueError(f"{path}: row {i + 1}: arrival time must be a finite number of seconds, got {arrival[i]!r}")
    arrival = arrival - arrival.min() if len(arrival) else arrival
    return requests_from_arrays(arrival, _token_counts(_pick(frame, _INPUT, path), path),
                                _token_counts(_pick(frame, _OUTPUT, path), path))


def _token_counts(column, path: Path) -> np.ndarray:
    """A length column as int64; a value that is not a whole number of tokens below 2**62 is a ValueError
    (a float cast would turn inf or 1e300 into -2**63)."""
    values = np.asarray(column, dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= 2.0**62)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: row {i + 1}: a length must be a whole number of tokens, got {values[i]!r}")
    return values.astype(np.int64)
