"""Fit a profile's served-request coefficients on online runs, every other coefficient kept (docs/online-model.md).

    perfmodel calibrate fit-serving RESULTS... --hardware h200-sxm --profile perfmodel/profiles/h200-sxm.yaml

The step costs, memory and kernel coefficients stay the profile's (fitted on offline runs); only the group
``serving`` (``calibrate.fit.online.serving_coefficients``) is fitted, by re-simulating every online run
(``calibrate.fit.online.fit_online``: mean TTFT, output tokens/s and per-request decode speed, log ratios, a weak
pull toward the profile's values). The profile is rewritten with those coefficients (value, prior, stderr) and a
``serving:`` section: the data, the command's options, the in-sample and cross-validated errors (k-fold by run
and leave one model out: each fold fitted on the other runs only; calibrate/report/serving.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from calibrate.fit.offline import CoefficientFitter
from calibrate.fit.online import SCAN_POINTS, fit_online, serving_coefficients
from calibrate.fit.observations import Observation
from hardware.spec import ClusterSpec
from perfmodel.atomic import write_text_atomic
from perfmodel.cost.anchors import default_anchors, findings, load_anchors
from perfmodel.cost.coefficients import Coefficients

@dataclass(frozen=True, kw_only=True)
class ServingFit:
    """The fitted serving coefficients: ``coefficients`` (the start with them replaced), their names, standard
    errors and the prior (the start)."""

    coefficients: Coefficients
    fitted: tuple[str, ...]
    stderr: dict[str, float]
    prior: Coefficients


def fit_serving(observations: Sequence[Observation], cluster: ClusterSpec, start: Coefficients, *,
                names: Sequence[str] | None = None, scan_points: int = SCAN_POINTS) -> ServingFit:
    """Fit the serving coefficients of ``start`` on the online runs (``start`` is also the prior they are pulled
    toward), by ``calibrate.fit.online.fit_online``; ``scan_points``: its second start's scan (fewer for folds)."""
    online = [o for o in observations if o.mode == "online"]
    names = tuple(names or serving_coefficients(online))
    coefficients, result, num_data = fit_online(online, start, start, names, scan_points=scan_points)
    stderr_fitter = CoefficientFitter(cluster, start)  # its Gauss-Newton standard errors of this result
    stderr_fitter.step_result_, stderr_fitter._num_data = result, num_data
    return ServingFit(coefficients=coefficients, fitted=names, stderr=stderr_fitter._stderr(names), prior=start)


def update_profile(path: str | Path, fit: ServingFit, *, source: str, options: dict[str, Any],
                   errors: dict[str, Any], runs: Sequence[Observation]) -> None:
    """Rewrite the profile with the fitted serving coefficients and its ``serving:`` section, line by line: every
    other line stays as it was (a profile's other sections keep their own layout)."""
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)
    doc = yaml.safe_load("".join(lines)) or {}
    anchors = load_anchors(doc["anchors"]) if doc.get("anchors") else default_anchors()
    entries = {}
    for name in fit.fitted:
        entry = {"value": float(getattr(fit.coefficients, name)), "prior": float(getattr(fit.prior, name))}
        if name in fit.stderr:
            entry["stderr"] = float(fit.stderr[name])
        entries[name] = {**entry, "anchor": anchors[name].entry()}  # every profile entry names its anchor
    out, section, skipping, replacing = [], None, False, False
    for line in lines:
        top = line[:1].isalpha()
        if top and section == "coefficients":  # coefficients the profile has no line for yet: at its end
            out.extend(_dump({n: entries.pop(n)}, indent=2) for n in list(entries))
        if top:
            section = line.split(":", 1)[0]
            skipping = section == "serving"  # an earlier fit's section: replaced below
        if skipping:
            continue
        key = line[2:].split(":", 1)[0] if section == "coefficients" and line.startswith("  ") \
            and not line.startswith("   ") else None
        if key in entries:
            out.append(_dump({key: entries.pop(key)}, indent=2))
            replacing = True
            continue
        if section == "coefficients" and line.startswith("    ") and replacing:
            continue  # the nested lines of a replaced entry (its anchor is written afresh)
        replacing = False
        out.append(line)
    if entries and section == "coefficients":
        out.extend(_dump({n: entries.pop(n)}, indent=2) for n in list(entries))
    if entries:
        raise ValueError(f"{path}: no coefficients entry for {', '.join(entries)}")
    out.append(_dump({"serving": {
        "source": source, "fitted": list(fit.fitted), "options": options,
        "data": {"runs": len(runs), "models": sorted({o.model_name for o in runs})}, "errors": errors}}))
    text = _with_findings("".join(out), fit, anchors)
    loaded = yaml.safe_load(text)
    assert all(loaded["coefficients"][n]["value"] == getattr(fit.coefficients, n) for n in fit.fitted)
    write_text_atomic(path, text)


def _with_findings(text: str, fit: ServingFit, anchors) -> str:
    """The profile's ``findings:`` recomputed over the offline fit's and this fit's coefficients (a serving
    coefficient far from its anchor is a finding too)."""
    doc = yaml.safe_load(text)
    fitted = [*doc.get("fitted", []), *(n for n in fit.fitted if n not in doc.get("fitted", []))]
    values = Coefficients().replace(**{n: e["value"] for n, e in doc["coefficients"].items()
                                       if isinstance(e, dict) and "value" in e})
    block = _dump({"findings": findings(values, fitted, anchors)})
    out, skipping, placed = [], False, False
    for line in text.splitlines(keepends=True):
        if line[:1].isalpha():
            skipping = line.startswith("findings:")
            if skipping and not placed:
                out.append(block)
                placed = True
        if not skipping:
            out.append(line)
    return "".join(out) if placed else block + "".join(out)


def _dump(mapping: dict[str, Any], indent: int = 0) -> str:
    text = yaml.safe_dump(mapping, sort_keys=False, width=110)
    return "".join(" " * indent + line for line in text.splitlines(keepends=True))
