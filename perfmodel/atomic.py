"""Atomic file writes: the one way results, profiles, plots and timelines reach the disk.

``with atomic_path(path) as tmp:`` hands out a temporary path in the target's folder (so the final rename stays
on one filesystem); when the block succeeds the file is flushed to disk (fsync) and renamed over ``path``, so a
reader sees the old file or the new one, never half of one. When the block fails, the temporary file is removed:
nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write; renamed onto ``path`` when the ``with`` block succeeds."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
