"""``perfmodel``: the command line, a thin layer over the library. One module per command; flags become one
``ScenarioOptions`` in ``perfmodel.cli.options``. Flags are named as vLLM names them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from perfmodel.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from calibrate.cli import add_calibrate_subcommands
    from perfmodel.cli import catalog, compare, pareto, plan, predict, simulate

    parser = argparse.ArgumentParser(prog="perfmodel", description=(
        "Predict vLLM inference throughput, latency and memory on GPU clusters; calibrate against real runs."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (predict, catalog, simulate, compare, plan, pareto):
        command.register(sub)
    add_calibrate_subcommands(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    from hardware import HardwareError

    return (UserError, HardwareError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except user_errors() as exc:
        print(f"perfmodel: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("perfmodel: interrupted", file=sys.stderr)
        return 130
