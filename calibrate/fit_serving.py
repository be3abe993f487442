"""Fit a profile's served-request coefficients on online runs, every other coefficient kept (docs/online-model.md).

    perfmodel calibrate fit-serving RESULTS... --hardware h200-sxm --profile perfmodel/profiles/h200-sxm.yaml

The step costs, memory and kernel coefficients stay the profile's (fitted on offline runs); only the group
``serving`` (``calibrate.fit_online.serving_coefficients``) is fitted, by re-simulating every online run
(``calibrate.fit_online.fit_online``: mean TTFT, output tokens/s and per-request decode speed, log ratios, a weak
pull toward the profile's values). The profile is rewritten with those coefficients (value, prior, stderr) and a
``serving:`` section: the data, the command's options, the in-sample and cross-validated errors (k-fold by run
and leave one model out: each fold fitted on the other runs only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import yaml

from calibrate.check import GROUPINGS, compare, summarize
from calibrate.fit import CoefficientFitter
from calibrate.fit_online import serving_coefficients
from calibrate.observations import Observation
from calibrate.profile_io import write_yaml_atomic
from hardware.spec import ClusterSpec
from perfmodel.coefficients import Coefficients

REPORTED = ("ttft_s_mean", "ttft_s_median", "tpot_s_mean", "tpot_s_median", "itl_s_mean", "e2e_s_mean",
            "output_tokens_per_second")


def fit_serving(observations: Sequence[Observation], cluster: ClusterSpec, start: Coefficients, *,
                names: Sequence[str] | None = None) -> CoefficientFitter:
    """The fitter of the serving coefficients of ``start`` on the online runs (``.coefficients_`` = ``start``
    with those replaced; ``start`` is also the prior they are pulled toward)."""
    online = [o for o in observations if o.mode == "online"]
    names = tuple(names or serving_coefficients(online))
    return CoefficientFitter(cluster, start, step_names=names, fit_memory=False).fit(online)


def cross_validate_serving(observations: Sequence[Observation], cluster: ClusterSpec, start: Coefficients, by: str,
                           *, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Each group of ``GROUPINGS[by]`` predicted with serving coefficients fitted on the other groups only."""
    key, frames = GROUPINGS[by], []
    for group in sorted({key(o) for o in observations}):
        train = [o for o in observations if key(o) != group]
        test = [o for o in observations if key(o) == group]
        if not train:
            continue
        if progress:
            progress(f"leave-{by}-out: fitting without {group} ({len(train)} runs)")
        fitted = fit_serving(train, cluster, start).coefficients_
        frames.append(compare(test, cluster, fitted, fold=f"leave-{by}-out:{group}"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def error_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Median and p90 APE of the reported metrics (the memory model's KV cache, as a user predicts)."""
    return {s.metric: {"median_ape": round(s.median_ape, 4), "p90_ape": round(s.p90_ape, 4), "runs": s.num_runs}
            for s in summarize(frame) if s.metric in REPORTED}


def update_profile(path: str | Path, fitter: CoefficientFitter, *, source: str, options: dict[str, Any],
                   errors: dict[str, Any], runs: Sequence[Observation]) -> None:
    """Rewrite the profile with the fitted serving coefficients and its ``serving:`` section; the rest as it was."""
    path = Path(path)
    document = yaml.safe_load(path.read_text())
    names = fitter.fitted_
    for name in names:
        entry = {"value": float(getattr(fitter.coefficients_, name)), "prior": float(getattr(fitter.prior, name))}
        if name in fitter.stderr_:
            entry["stderr"] = float(fitter.stderr_[name])
        document["coefficients"][name] = entry
    document["serving"] = {
        "source": source, "fitted": list(names), "options": options,
        "data": {"runs": len(runs), "models": sorted({o.model_name for o in runs})},
        "errors": errors}
    write_yaml_atomic(path, document)
