"""Predicted versus measured, per run and in aggregate, with cross-validation.

For every run the simulator replays its requests twice: with vLLM's measured KV-cache blocks (judging the
step-cost model alone) and with the memory model's (end to end, what a user gets before booking). Errors are
absolute percentage errors ``|predicted - measured| / measured``. Cross-validation refits on all groups but
one (a model, or a layout) and predicts the group left out, so no run is judged by coefficients fitted on it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from calibrate.fit.offline import CoefficientFitter
from calibrate.fit.observations import OFFLINE_METRICS, ONLINE_METRICS, Observation, predicted_metrics
from hardware.spec import ClusterSpec
from perfmodel.cost.coefficients import Coefficients

KFOLDS = 4


def _run_hash(run_id: str) -> int:
    """A run id's fold number source: its first 8 hex digits (perfmodel's ids are hashes), else a CRC."""
    head = run_id[:8]
    try:
        return int(head, 16)
    except ValueError:
        return zlib.crc32(run_id.encode())

GROUPINGS: dict[str, Callable[[Observation], str]] = {
    "model": lambda o: o.model_name,
    "layout": lambda o: o.layout_name,
    "concurrency": lambda o: f"c{o.max_concurrency}",  # closed-loop clients (online runs)
    # k-fold by a hash of the run id: deterministic, and the same run lands in the same fold every time
    "kfold": lambda o: f"fold{_run_hash(o.run_id) % KFOLDS}",
}


def compare(observations: Sequence[Observation], cluster: ClusterSpec, coefficients: Coefficients, *,
            fold: str = "in-sample") -> pd.DataFrame:
    """One row per (run, metric): measured, predicted (end to end) and predicted with measured KV."""
    rows = []
    for o in observations:
        memory = o.memory(coefficients)
        base = dict(run_id=o.run_id, model=o.model_name, layout=o.layout_name, mode=o.mode, eager=o.eager,
                    max_num_seqs=o.engine.max_num_seqs, input_len=float(np.mean(o.input_lens)),
                    output_len=float(np.mean(o.output_lens)), num_prompts=len(o.input_lens), fold=fold)
        if o.measured_kv_cache_tokens:
            rows.append({**base, "metric": "kv_cache_tokens", "measured": float(o.measured_kv_cache_tokens),
                         "predicted": float(memory.kv_cache_tokens), "predicted_measured_kv": np.nan})
        end_to_end = predicted_metrics(o, o.simulate(coefficients, kv_from="model")) \
            if memory.num_gpu_blocks > 0 else {}
        with_kv = predicted_metrics(o, o.simulate(coefficients, kv_from="measured"))
        for metric in (OFFLINE_METRICS if o.mode == "offline" else ONLINE_METRICS):
            if metric in o.measured and o.measured[metric] > 0:
                rows.append({**base, "metric": metric, "measured": o.measured[metric],
                             "predicted": end_to_end.get(metric, np.nan),
                             "predicted_measured_kv": with_kv.get(metric, np.nan)})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["ape"] = (frame["predicted"] - frame["measured"]).abs() / frame["measured"]
        frame["ape_measured_kv"] = (frame["predicted_measured_kv"] - frame["measured"]).abs() / frame["measured"]
    return frame


def leave_one_group_out(observations: Sequence[Observation], by: str, *, label: str,
                        progress: Callable[[str], None] | None = None
                        ) -> Iterator[tuple[str, list[Observation], list[Observation]]]:
    """``(group, train, test)`` for each group of ``GROUPINGS[by]`` that leaves something to train on."""
    key = GROUPINGS[by]
    groups = sorted({key(o) for o in observations})
    for i, group in enumerate(groups, 1):
        train = [o for o in observations if key(o) != group]
        test = [o for o in observations if key(o) == group]
        if progress:
            progress(f"{label}: {i}/{len(groups)} leaving out {group}")
        if train:
            yield group, train, test


def map_folds(fold_fn: Callable, observations: Sequence[Observation], by: str, *, label: str, workers: int | None = 1,
              progress: Callable[[str], None] | None = None, fold_kwargs: dict | None = None) -> list:
    """``fold_fn(group, train, test, **fold_kwargs)`` for every fold of :func:`leave_one_group_out`, in fold order;
    with ``workers`` > 1 (None: every core) the folds run in forked worker processes (each fold's fit is
    independent, so the results are the same as one at a time). The folds reach the workers through the fork, not
    pickled (scenarios hold read-only mappings); where processes cannot fork, they run one at a time."""
    import multiprocessing
    import os

    from perfmodel.pool import executor

    global _FOLDS
    folds = list(leave_one_group_out(observations, by, label=label, progress=progress))
    num_workers = 1 if workers == 1 else min(workers or os.cpu_count() or 1, max(len(folds), 1))
    if num_workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fold_fn(group, train, test, **(fold_kwargs or {})) for group, train, test in folds]
    _FOLDS = (fold_fn, folds, fold_kwargs or {})
    try:
        with executor(num_workers) as pool:
            futures = [pool.submit(_run_fold, i) for i in range(len(folds))]
            results = []
            for (group, _, _), future in zip(folds, futures):
                results.append(future.result())
                if progress:
                    progress(f"{label}: fold {group} done")
    finally:
        _FOLDS = None
    return results


_FOLDS: tuple | None = None  # (fold_fn, folds, kwargs) while map_folds runs, for its forked workers


def _run_fold(index: int):
    fold_fn, folds, kwargs = _FOLDS
    group, train, test = folds[index]
    return fold_fn(group, train, test, **kwargs)


def _fit_and_compare(group: str, train: list[Observation], test: list[Observation], *, cluster: ClusterSpec,
                     prior: Coefficients, by: str, fit_options: dict) -> pd.DataFrame:
    fitted = CoefficientFitter(cluster, prior, **fit_options).fit(train).coefficients_
    return compare(test, cluster, fitted, fold=f"leave-{by}-out:{group}")


def cross_validate(observations: Sequence[Observation], cluster: ClusterSpec, prior: Coefficients, *,
                   by: str = "model", progress: Callable[[str], None] | None = None, workers: int | None = 1,
                   **fit_options) -> pd.DataFrame:
    """Leave one group out: fit on the others, compare on the group left out."""
    frames = map_folds(_fit_and_compare, observations, by, label=f"cross-validation by {by}", workers=workers,
                       progress=progress,
                       fold_kwargs=dict(cluster=cluster, prior=prior, by=by, fit_options=fit_options))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass(frozen=True)
class ErrorSummary:
    metric: str
    num_runs: int
    median_ape: float
    p90_ape: float
    median_ape_measured_kv: float


def summarize(frame: pd.DataFrame) -> list[ErrorSummary]:
    """Median and p90 absolute percentage error per metric."""
    out = []
    if frame.empty:
        return out
    for metric, group in frame.groupby("metric", sort=False):
        ape = group["ape"].dropna()
        kv = group["ape_measured_kv"].dropna()
        out.append(ErrorSummary(metric=str(metric), num_runs=len(group),
                                median_ape=float(ape.median()) if len(ape) else float("nan"),
                                p90_ape=float(ape.quantile(0.9)) if len(ape) else float("nan"),
                                median_ape_measured_kv=float(kv.median()) if len(kv) else float("nan")))
    return out
