"""Append-only results: one JSON object per line, one line per run (workload).

Each record is appended with flush + fsync as soon as its run finishes, so an interrupted sweep loses at most the
run in flight. A torn last line (a process killed mid-write) is skipped on read, and the next append starts on a
fresh line. `path` may also be a folder: every `*.jsonl` in it is read (SLURM jobs write one file each).
The record schema is documented in calibrate/README.md.
"""
from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

SCHEMA_VERSION = 1


def append_record(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as a JSON line; durable when this returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_jsonable(record), sort_keys=True, allow_nan=False) + "\n"
    with open(path, "a+b") as f:
        _lock(f)
        try:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line  # a torn line before us: start on a fresh one
                f.seek(0, os.SEEK_END)
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        finally:
            _unlock(f)


def load_records(path: str | Path, *, latest_only: bool = False) -> list[dict[str, Any]]:
    """All records of a results file (or of every `*.jsonl` in a folder), in file order.

    Lines that are not valid JSON (a torn write) are skipped with a warning unless it is the last line.
    `latest_only` keeps the last record of each `run_id` (a retried run replaces its earlier error).
    """
    records: list[dict[str, Any]] = []
    for file in _files(path):
        records.extend(_read_file(file))
    if latest_only:
        last: dict[str, dict[str, Any]] = {}
        for rec in records:
            last.pop(rec.get("run_id"), None)
            last[rec.get("run_id")] = rec
        records = list(last.values())
    return records


def load_results(path: str | Path, *, latest_only: bool = True):
    """Records as a `pandas.DataFrame` with flattened columns (`config.engine.max_num_seqs`,
    `metrics.output_tokens_per_second`, ...); per-request lists are left out."""
    import pandas as pd

    records = [_without_lists(r) for r in load_records(path, latest_only=latest_only)]
    if not records:
        return pd.DataFrame()
    return pd.json_normalize(records, sep=".")


def completed_run_ids(path: str | Path, *, include_errors: bool = True) -> set[str]:
    """Run ids already recorded (status "ok", and "error" too unless `include_errors` is False)."""
    if not Path(path).exists():
        return set()
    return {r["run_id"] for r in load_records(path)
            if "run_id" in r and (r.get("status") == "ok" or (include_errors and r.get("status") == "error"))}


def _files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob("*.jsonl"))
    return [path] if path.exists() else []


def _read_file(file: Path) -> list[dict[str, Any]]:
    out = []
    lines = file.read_bytes().split(b"\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            if i < len(lines) - 1 and any(x.strip() for x in lines[i + 1:]):
                warnings.warn(f"{file}: line {i + 1} is not valid JSON (a torn write?); skipped", stacklevel=3)
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _without_lists(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_without_lists(v) if isinstance(v, Mapping) else v)
            for k, v in rec.items() if not isinstance(v, list)}


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _jsonable(x.item())
    return x


if sys.platform != "win32":
    import fcntl

    def _lock(f) -> None:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except OSError:  # some network filesystems refuse locks; appends of one line are still whole
            pass

    def _unlock(f) -> None:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
else:  # pragma: no cover
    def _lock(f) -> None:
        pass

    def _unlock(f) -> None:
        pass


def iter_new_records(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete records after byte `offset` and the offset after the last complete line (for progress polling)."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    out = []
    for raw in data[: end + 1].split(b"\n"):
        try:
            rec = json.loads(raw) if raw.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            rec = None
        if isinstance(rec, dict):
            out.append(rec)
    return out, offset + end + 1

