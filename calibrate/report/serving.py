"""Cross-validated errors of the served-request fit (calibrate/fit/serving.py): each group of runs predicted with
serving coefficients fitted on the other groups only, and the summary the profile's ``serving:`` section keeps."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd

from calibrate.fit.observations import Observation
from calibrate.fit.serving import fit_serving
from calibrate.report.check import GROUPINGS, compare, summarize
from hardware.spec import ClusterSpec
from perfmodel.cost.coefficients import Coefficients

# The folds' second start scans fewer points than a full fit (SCAN_POINTS): three coefficients, a smooth
# objective, and eight fits to run (on the 13 earlier H200 runs 8 points gave the 32-point fit's optimum)
FOLD_SCAN_POINTS = 8
REPORTED = ("ttft_s_mean", "ttft_s_median", "tpot_s_mean", "tpot_s_median", "itl_s_mean", "e2e_s_mean",
            "output_tokens_per_second")


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
        fitted = fit_serving(train, cluster, start, scan_points=FOLD_SCAN_POINTS).coefficients
        frames.append(compare(test, cluster, fitted, fold=f"leave-{by}-out:{group}"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def error_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Median and p90 APE of the reported metrics (the memory model's KV cache, as a user predicts)."""
    return {s.metric: {"median_ape": round(s.median_ape, 4), "p90_ape": round(s.p90_ape, 4), "runs": s.num_runs}
            for s in summarize(frame) if s.metric in REPORTED}
