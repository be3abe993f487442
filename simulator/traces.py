"""Request traces in the formats users bring: the project's own, and two public production trace formats.

Every reader returns arrival times (seconds, from the trace's first request) and prompt/output token counts.
Column mappings (learned from the formats' public descriptions; the fixtures under tests/fixtures/traces are
synthetic, made for the tests, not rows of the published traces):

| format     | arrival                                  | prompt tokens      | output tokens     | other columns  |
|------------|------------------------------------------|--------------------|-------------------|----------------|
| perfmodel  | `arrival_s` / `timestamp_s` / `timestamp`| `num_prompt_tokens`, `input_len`, `prompt_len`, `input_tokens` | `num_output_tokens`, `output_len`, `output_tokens` | ignored |
| azure      | `TIMESTAMP`: a date and time, e.g. `2023-11-16 18:17:03.9799600` (an offset such as `+00:00` allowed) | `ContextTokens` | `GeneratedTokens` | ignored |
| burstgpt   | `Timestamp`: seconds from the start of the collection | `Request tokens` | `Response tokens` | `Model`, `Total tokens`, `Log Type` (and newer files' `Session ID`, `Elapsed time`) ignored |

The Azure LLM inference traces (github.com/Azure/AzurePublicDataset, `AzureLLMInferenceTrace_*.csv`) hold one
row per request; BurstGPT (github.com/HPMLL/BurstGPT, `BurstGPT_*.csv`) marks a failed request with 0
response tokens: those rows are left out (the `_without_fails` files have none). Any other length below 1, or
not a whole number, or a time that does not parse, is an error naming its row.

A window (`start_s`, `duration_s`) keeps the requests arriving in [start, start + duration) seconds after the
trace's first request, their times then counted from the window's start.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("auto", "perfmodel", "azure", "burstgpt")
_ARRIVAL = ("arrival_s", "timestamp_s", "timestamp")
_INPUT = ("num_prompt_tokens", "input_len", "prompt_len", "input_tokens")
_OUTPUT = ("num_output_tokens", "output_len", "output_tokens")
_AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_BURSTGPT = ("Timestamp", "Request tokens", "Response tokens")


def read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    if path.suffix in (".jsonl", ".json"):
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return pd.read_csv(path)


def detect_format(columns: Sequence[str]) -> str:
    """The format whose columns a header has (Azure and BurstGPT by all three of their columns)."""
    names = set(columns)
    if set(_AZURE) <= names:
        return "azure"
    if set(_BURSTGPT) <= names:
        return "burstgpt"
    return "perfmodel"


def read_trace(path: str | Path, fmt: str = "auto", *, start_s: float = 0.0,
               duration_s: float = math.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival_s, num_prompt_tokens, num_output_tokens) of a trace file, in file order; arrivals from the
    window's start (module docstring). ValueError, one line, for anything that is not a valid trace."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown trace format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not (0.0 <= start_s < math.inf) or not duration_s > 0:
        raise ValueError(f"the trace window needs a start >= 0 and a duration > 0 seconds, got start {start_s}, "
                         f"duration {duration_s}")
    frame = read_table(path)
    if fmt == "auto":
        fmt = detect_format(frame.columns)
    if fmt == "azure":
        arrival = _datetimes_s(_column(frame, ("TIMESTAMP",), path, fmt), path)
        prompt = _token_counts(_column(frame, ("ContextTokens",), path, fmt), path)
        output = _token_counts(_column(frame, ("GeneratedTokens",), path, fmt), path)
    elif fmt == "burstgpt":
        arrival = _seconds(_column(frame, ("Timestamp",), path, fmt), path)
        prompt = _token_counts(_column(frame, ("Request tokens",), path, fmt), path)
        output = _token_counts(_column(frame, ("Response tokens",), path, fmt), path)
        served = output > 0  # 0 response tokens: a failed request
        arrival, prompt, output = arrival[served], prompt[served], output[served]
    else:
        arrival = _seconds(_column(frame, _ARRIVAL, path, fmt), path)
        prompt = _token_counts(_column(frame, _INPUT, path, fmt), path)
        output = _token_counts(_column(frame, _OUTPUT, path, fmt), path)
    for name, values in (("prompt", prompt), ("output", output)):
        if len(values) and values.min() < 1:
            i = int(np.argmax(values < 1))
            raise ValueError(f"{path}: row {i + 1}: a request needs at least 1 {name} token, got {values[i]}")
    if len(arrival):
        arrival = arrival - arrival.min()
    keep = (arrival >= start_s) & (arrival - start_s < duration_s)
    if not keep.all():
        arrival, prompt, output = arrival[keep] - start_s, prompt[keep], output[keep]
    elif start_s:
        arrival = arrival - start_s
    return arrival, prompt, output


def _column(frame: pd.DataFrame, names: Sequence[str], path: Path, fmt: str) -> np.ndarray:
    for name in names:
        if name in frame.columns:
            return frame[name].to_numpy()
    raise ValueError(f"{path}: no column among {', '.join(names)} ({fmt} trace format)")


def _seconds(column, path: Path) -> np.ndarray:
    try:
        values = np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.array([_number(v) for v in column], dtype=np.float64)
    if not np.isfinite(values).all():
        i = int(np.argmax(~np.isfinite(values)))
        raise ValueError(f"{path}: row {i + 1}: arrival time must be a finite number of seconds, got {column[i]!r}")
    return values


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _datetimes_s(column, path: Path) -> np.ndarray:
    """Date-time strings as seconds since the first of them (sub-microsecond digits kept to the nanosecond)."""
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(column), errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: row {i + 1}: TIMESTAMP must be a date and time such as 2023-11-16 18:17:03.98, "
                         f"got {str(column[i])[:40]!r}")
    ns = parsed.astype("int64").to_numpy()
    return (ns - ns.min()) / 1e9


def _token_counts(column, path: Path) -> np.ndarray:
    """A length column as int64; a value that is not a whole number of tokens below 2**62 is a ValueError
    (a float cast would turn inf or 1e300 into -2**63)."""
    try:
        values = np.asarray(column, dtype=np.float64)
        shown = values
    except (TypeError, ValueError):
        values = np.array([_number(v) for v in column], dtype=np.float64)
        shown = [str(v)[:40] for v in column]
    bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= 2.0**62)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: row {i + 1}: a length must be a whole number of tokens, got {shown[i]!r}")
    return values.astype(np.int64)
