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
        # mkstemp makes the file 0600; give it the mode a plain open() would (or the replaced file's), so a
        # profile or result written on a shared cluster stays readable by the group
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
