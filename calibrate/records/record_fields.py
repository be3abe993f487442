"""The machinery of calibrate.records.record: a section dataclass's fields name their record keys and converters.

``parsed(convert, *keys)`` declares a field read from the first of ``keys`` present in the raw section (default:
the field's own name) and converted by ``convert``; ``build_section(cls, raw, where, run_id)`` builds the
dataclass from a raw mapping, raising ``RecordError`` with one line naming the run and the field. Converters
take a raw JSON value and return the typed one, or raise ``ValueError("is not ...")``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from perfmodel.errors import UserError


class RecordError(UserError):
    """A results record lacks a field or holds a value of the wrong type (one line, naming run and field)."""


def to_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise ValueError("is not an integer")
    return int(v)


def to_float(v: Any) -> float:
    """Numbers, and the strings JSON cannot hold natively ("inf", the store's spelling of infinity)."""
    if isinstance(v, str) and v.lower() in ("inf", "infinity", "-inf", "nan"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("is not a number")
    return float(v)


def to_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("is not true/false")
    return v


def to_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("is not a string")
    return v


def to_strs(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ValueError("is not a list of strings")
    return tuple(v)


def to_mapping(v: Any) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError("is not a mapping")
    return MappingProxyType(dict(v))


def _array(dtype: type) -> Callable[[Any], np.ndarray]:
    def convert(v: Any) -> np.ndarray:
        if not isinstance(v, (list, tuple)) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise ValueError("is not a list of numbers")
        out = np.asarray(v, dtype=float)
        if dtype is int:
            if not np.all(out == np.round(out)):
                raise ValueError("is not a list of integers")
            out = out.astype(np.int64)
        out.setflags(write=False)
        return out
    convert.__name__ = f"{dtype.__name__}_array"
    return convert


to_ints, to_floats = _array(int), _array(float)


def parsed(convert: Callable[[Any], Any], *keys: str, required: bool = False, default: Any = None) -> Any:
    """A parsed field: read from the first of ``keys`` present (default: the field's own name)."""
    meta = {"convert": convert, "keys": keys, "required": required}
    if required:
        return field(metadata=meta)
    if isinstance(default, Mapping):  # an empty read-only mapping, one per instance
        return field(default_factory=lambda: MappingProxyType({}), metadata=meta)
    return field(default=default, metadata=meta)


def record_keys(cls: type, name: str) -> tuple[str, ...]:
    """The record keys a field of a section class is read from (first present wins)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.metadata.get("keys") or (name,)


def sub_section(mapping: Mapping[str, Any], key: str, run_id: str, where: str = "") -> Mapping[str, Any]:
    """A nested section; absent or null = empty (the writers store None for sections they have nothing for)."""
    value = mapping.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RecordError(f"run {run_id}: {where}{key} is not a mapping")
    return value


def build_section(cls: type, raw: Mapping[str, Any], where: str, run_id: str, **given: Any) -> Any:
    """Build ``cls`` from ``raw`` by each field's converter; ``given`` fills fields that are not read."""
    values = dict(given)
    for f in dataclasses.fields(cls):
        if "convert" not in f.metadata:
            continue
        keys = f.metadata["keys"] or (f.name,)
        key = next((k for k in keys if raw.get(k) is not None), None)
        if key is None:
            if f.metadata["required"]:
                raise RecordError(f"run {run_id}: {where + '.' if where else ''}{keys[0]} is missing")
            continue
        try:
            values[f.name] = f.metadata["convert"](raw[key])
        except ValueError as exc:
            shown = repr(raw[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise RecordError(f"run {run_id}: {where + '.' if where else ''}{key} = {shown} {exc}") from None
    return cls(**values)
