"""Atomic file writes: the one way results, profiles, plots and timelines reach the disk.

``with atomic_path(path) as tmp:`` hands out a temporary path in the target's folder (so the final rename stays
on one filesystem); when the block succeeds the file is flushed to disk (fsync) and renamed over ``path``, so a
reader sees the old file or the new one, never half of one. When the block fails, the temporary file is removed:
nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write; renamed onto ``path`` when the ``with`` block succeeds."""
    path = Path(os.path.realpath(path))  # through a symlink: update its target, not replace the link
    tmp = _new_temporary(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _keep_mode(tmp, path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _new_temporary(path: Path) -> Path:
    """An empty file beside ``path``, created with mode 0666 so that the kernel applies the umask: the mode a
    plain open() gives (mkstemp's 0600 left profiles and results unreadable to a cluster group)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _keep_mode(tmp: Path, path: Path) -> None:
    """A replaced file's permission bits carry over (after the write, so a read-only file can be replaced)."""
    try:
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) & 0o777)
    except FileNotFoundError:  # a new file keeps the umask's mode
        pass
    except OSError:  # a filesystem without permission bits
        pass


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
