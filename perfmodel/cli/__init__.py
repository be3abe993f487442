"""``perfmodel``: the command line, a thin layer over the library. One module per command; flags become one
``ScenarioOptions`` in ``perfmodel.cli.options``. Flags are named as vLLM names them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from perfmodel.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, ``perfmodel: error: <command>: <what>`` and exit 2, with a
    pointer to ``--help`` instead of the usage block. Subparsers inherit the class (argparse's
    ``add_subparsers`` makes them of the parent's type), so every command and ``calibrate`` action uses it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("perfmodel").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"perfmodel: error: {where}{' '.join(message.split())} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from perfmodel.cli import catalog, compare, pareto, plan, predict, simulate
    from perfmodel.cli.calibrate import add_calibrate_subcommands

    parser = ArgumentParser(prog="perfmodel", description=(
        "Predict vLLM inference throughput, latency and memory on GPU clusters; calibrate against real runs."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (predict, catalog, simulate, compare, plan, pareto):
        command.register(sub)
    add_calibrate_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from perfmodel.cli.vllm_flags import expand_vllm_argv, ignored

    parser = build_parser()
    try:
        args = parser.parse_args(expand_vllm_argv(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help (0) or a one-line argparse error (2)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except UserError as exc:  # a --config file that cannot be read
        print(f"perfmodel: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    unused = ignored(args)
    if unused:
        print(f"perfmodel: ignored: no effect on performance: {' '.join(unused)}", file=sys.stderr)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"perfmodel: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("perfmodel: interrupted", file=sys.stderr)
        return 130
