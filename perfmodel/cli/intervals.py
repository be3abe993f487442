"""The ``--interval-level`` flag and how intervals show in tables, JSON and CSV (perfmodel.uncertainty.intervals)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perfmodel.uncertainty.intervals import Interval

DEFAULT_LEVEL = 0.9  # perfmodel.uncertainty.intervals.DEFAULT_LEVEL; not imported here: --help must not load numpy


def add_interval_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval-level", type=float, default=DEFAULT_LEVEL, metavar="P",
                        help="probability of the interval on every predicted figure (default 0.9)")


def level(args: argparse.Namespace) -> float:
    from perfmodel.uncertainty.intervals import check_level

    return check_level(getattr(args, "interval_level", DEFAULT_LEVEL))


def as_json(interval: "Interval | None") -> dict[str, Any] | None:
    return interval.to_dict() if interval is not None else None


def with_interval(values: dict[str, Any], interval: "Interval | None") -> dict[str, Any]:
    """A JSON object of figures plus its ``interval`` object."""
    return {**values, "interval": as_json(interval)}


def csv_row(values: dict[str, Any], interval: "Interval | None", names) -> dict[str, Any]:
    """A CSV row of figures plus ``<figure>_low`` / ``<figure>_high`` columns (empty when unknown)."""
    columns = interval.csv_columns(names) if interval is not None else {}
    return {**values, **{f"{n}_{side}": columns.get(f"{n}_{side}") for n in names for side in ("low", "high")}}


def footnote(interval: "Interval", profile_name: str) -> str:
    """The line under a table that says what its ± columns are and where their widths come from."""
    return f"± : {interval.level:.0%} interval from the {interval.source} errors of profile {profile_name}"
