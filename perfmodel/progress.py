"""Progress of long work (plan's simulations, a calibration sweep's runs) on a stream, one reporter for all.

On a terminal a bar ``[####    ] k/N label`` is redrawn in place; elsewhere (a log file, CI) a line is written
every tenth of the work. Messages (``note``) are printed as whole lines either way. Nothing is shown for work
that finishes within ``delay_s``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30


class Progress:
    """``progress(done, total)`` as work finishes; ``progress.note(line)`` for a message; ``close()`` at the end."""

    def __init__(self, stream: TextIO | None = None, *, label: str = "simulations", delay_s: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.delay_s = delay_s
        self.start = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown = False  # a bar is on the current line
        self._last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        if time.monotonic() - self.start < self.delay_s or total <= 0:
            return
        if self.tty:
            filled = round(BAR_WIDTH * done / total)
            self.stream.write(f"\r[{'#' * filled}{' ' * (BAR_WIDTH - filled)}] {done}/{total} {self.label}")
            self.shown = True
        else:
            tenth = done // max(1, total // 10)
            if tenth == self._last_tenth and done != total:
                return
            self._last_tenth = tenth
            self.stream.write(f"{done}/{total} {self.label}\n")
        self.stream.flush()

    def note(self, line: str) -> None:
        """A message on its own line (the bar, if any, is redrawn by the next update)."""
        if self.shown:
            self.stream.write("\n")
            self.shown = False
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
