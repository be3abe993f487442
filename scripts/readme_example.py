"""Print the README's worked example from a real run: `perfmodel predict --gpus 16`, abbreviated as the README
shows it (header, notes, the table's first rows, '...', its last row). tests/test_readme.py checks the README
against this, so the example cannot go stale; after a model change, paste this output into the README."""

from __future__ import annotations

import contextlib
import io

from perfmodel.cli import main

COMMAND = ["predict", "--gpus", "16"]
HEAD_ROWS = 5


def example() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(COMMAND)
    lines = out.getvalue().rstrip("\n").splitlines()
    table_start = next(i for i, line in enumerate(lines) if line.startswith("#  layout"))
    head = lines[:table_start + 2 + HEAD_ROWS]
    body = ["$ perfmodel " + " ".join(COMMAND), *head, "...", lines[-1]]
    return "\n".join("    " + line if line else "" for line in body) + "\n"


if __name__ == "__main__":
    print(example(), end="")
