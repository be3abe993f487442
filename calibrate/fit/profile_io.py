"""Write a calibration profile: the fitted coefficients, where they came from and how well they fit."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from perfmodel.atomic import write_text_atomic

from perfmodel.cost.coefficients import Coefficients


def profile_document(*, name: str, gpu: str, coefficients: Coefficients, fitted: Sequence[str],
                     stderr: Mapping[str, float], prior: Coefficients, source: str, data: Mapping[str, Any],
                     errors: Mapping[str, Any], anchors: Mapping[str, Any] | None = None,
                     anchors_source: str | None = None, findings: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML document: every coefficient with its value; fitted ones with standard error and prior; with
    ``anchors`` (perfmodel.cost.anchors), every coefficient's anchor and the fit's findings."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Coefficients):
        value = float(getattr(coefficients, f.name))
        if f.name in fitted:
            entry = {"value": value, "prior": float(getattr(prior, f.name))}
            if f.name in stderr:
                entry["stderr"] = float(stderr[f.name])
            values[f.name] = entry
        else:
            values[f.name] = value
        if anchors is not None:
            values[f.name] = {**(values[f.name] if isinstance(values[f.name], dict) else {"value": value}),
                              "anchor": anchors[f.name].entry()}
    extra = {"anchors": anchors_source or "perfmodel.cost.anchors defaults", "findings": list(findings)} \
        if anchors is not None else {}
    return {
        "name": name,
        "gpu": gpu,
        "source": source,
        "created_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "fitted": list(fitted),
        "data": dict(data),
        "errors": dict(errors),
        **extra,
        "coefficients": values,
    }


def write_yaml_atomic(path: str | Path, document: Mapping[str, Any]) -> Path:
    """Write through a temporary file and rename, so a reader never sees half a profile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, yaml.safe_dump(dict(document), sort_keys=False, width=110))
