"""Write a profile's ``uncertainty:`` section: what ``perfmodel.uncertainty.intervals`` builds intervals from.

Measured on the profile's own data and on the other calibrated data sets, nothing guessed:

* ``covariance``: the Gauss-Newton covariance of the fitted step coefficients (``CoefficientFitter.covariance_``,
  a full fit on the profile's data; the coefficients themselves stay the profile's);
* ``coefficient_sd_reference``: the k-fold runs' median coefficient term per step kind, of all runs and per
  regime (the part of the coefficient noise the cross-validated residuals already hold, ``perfmodel.uncertainty.intervals``
  (a));
* ``residuals.seen_model``: k-fold cross-validated residuals ``log(measured / predicted)`` (runs unseen, their
  models seen), by regime (``perfmodel.uncertainty.intervals.regime``) and metric; ``residual_scales.seen_model``, each
  one's coefficient term (its run's delta-method sd of the metric's step kind), for the locally weighted
  quantiles;
* ``residuals.unseen_model``: leave-one-model-out residuals (absent with one model in the data);
* ``residuals.model_transfer``: fits on some models predicting the others (``model_transfer``). A profile of one
  model cannot measure them and may borrow another profile's (``borrowed_model_transfer``, named in
  ``model_transfer_source``): its own k-fold residuals each plus every one of ``TRANSFER_QUANTILES`` quantiles of
  the other's model-transfer and leave-one-model-out throughput residuals (``borrowed_transfer_pool``);
* ``transfer``: the profile's coefficients predicting another calibrated data set (another GPU, vLLM engine
  generation and model family), one list of residuals per metric.

Predictions are end to end (the memory model's KV cache), as a user gets them; every run also records its
delta-method coefficient term (``coef_sd_*``), so that the coverage report (``calibrate/report/coverage.py``)
rebuilds each interval exactly. The per-run rows are also written as a CSV for that report.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from calibrate.report.check import map_folds
from calibrate.fit.offline import CoefficientFitter
from calibrate.fit.observations import Observation, predicted_metrics
from hardware.spec import ClusterSpec
from perfmodel.cost.coefficients import Coefficients
from perfmodel.analysis.report import LATENCIES
from perfmodel.uncertainty.intervals import LATENCY_STATS, MIN_REGIME, REPRESENTATIVE_KINDS, coefficient_log_sd, regime, step_kind

# Figures whose residuals are stored (the measured names observations use).
THROUGHPUTS = ("tokens_per_second", "output_tokens_per_second", "requests_per_second")
LATENCY_METRICS = tuple(f"{k}_s_{s}" for k in LATENCIES for s in LATENCY_STATS)
DECODE_SPEED = "decode_tokens_per_s_per_request_mean"
DIGITS = 4
# Points of the borrowed model-transfer distribution each own k-fold residual is shifted by (borrowed_transfer_pool)
TRANSFER_QUANTILES = 20


def residual_rows(observations: Sequence[Observation], coefficients: Coefficients, covariance, *, cv: str,
                  fold: str) -> list[dict]:
    """One row per (run, measured figure): measured, predicted end to end, regime, coefficient terms."""
    rows = []
    for o in observations:
        if o.memory(coefficients).num_gpu_blocks <= 0:
            continue
        result = o.simulate(coefficients, kv_from="model")
        predicted = predicted_metrics(o, result)
        predicted.update({n: float(getattr(result.metrics, n)) for n in LATENCY_METRICS})
        sd = coefficient_log_sd(o.scenario.with_coefficients(coefficients), o.layout, covariance)
        base = dict(cv=cv, fold=fold, run_id=o.run_id, model=o.model_name, layout=o.layout_name, mode=o.mode,
                    regime=regime(mode=o.mode, eager=o.eager, gpus=o.layout.tp * o.layout.pp),
                    engine_generation=str(o.engine.engine_generation),
                    **{f"coef_sd_{k}": v for k, v in sd.items()})
        for metric in (*THROUGHPUTS, *LATENCY_METRICS, DECODE_SPEED):
            measured, pred = o.measured.get(metric, 0.0), predicted.get(metric, math.nan)
            if measured > 0 and pred > 0 and math.isfinite(pred):
                rows.append({**base, "metric": metric, "measured": measured, "predicted": pred,
                             "log_residual": math.log(measured / pred)})
    return rows


def _fit_and_residuals(group: str, train: list[Observation], test: list[Observation], *, cluster: ClusterSpec,
                       prior: Coefficients, covariance, by: str, cv: str, anchors=None) -> list[dict]:
    fitted = CoefficientFitter(cluster, prior, anchors=anchors).fit(train).coefficients_
    return residual_rows(test, fitted, covariance, cv=cv, fold=f"{by}:{group}")


def cross_validated_rows(observations: Sequence[Observation], cluster: ClusterSpec, prior: Coefficients,
                         covariance, *, by: str, cv: str, progress: Callable[[str], None] | None = None,
                         workers: int | None = 1, anchors=None) -> list[dict]:
    """Refit on all groups but one (``calibrate.report.check.GROUPINGS[by]``) and predict the one left out."""
    folds = map_folds(_fit_and_residuals, observations, by, label=cv, workers=workers, progress=progress,
                      fold_kwargs=dict(cluster=cluster, prior=prior, covariance=covariance, by=by, cv=cv,
                                       anchors=anchors))
    return [row for rows in folds for row in rows]


def coefficient_sd_reference(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The median coefficient term per step kind of these rows' runs, ``"all"`` of them and per regime with at
    least ``MIN_REGIME`` runs (``perfmodel.uncertainty.intervals``, (a): each regime's residuals hold its own runs' noise)."""
    runs = rows.drop_duplicates("run_id")

    def medians(group: pd.DataFrame) -> dict[str, float]:
        return {k: float(group[f"coef_sd_{k}"].median()) for k in REPRESENTATIVE_KINDS
                if f"coef_sd_{k}" in group and group[f"coef_sd_{k}"].notna().any()}

    out = {"all": medians(runs)}
    if "regime" in runs:
        out.update({regime: medians(g) for regime, g in runs.groupby("regime") if len(g) >= MIN_REGIME})
    return out


def grouped(rows: Sequence[dict], *, by_regime: bool = True) -> dict:
    """{regime: {metric: [log residuals, rounded]}} (or {metric: [...]} without regimes)."""
    out: dict = {}
    for r in rows:
        target = out.setdefault(r["regime"], {}) if by_regime else out
        target.setdefault(r["metric"], []).append(round(float(r["log_residual"]), DIGITS))
    return out


def grouped_scales(rows: Sequence[dict]) -> dict:
    """{regime: {metric: [each residual's coefficient term]}}, in ``grouped``'s order: the term of the step
    kind the metric scales with (``perfmodel.uncertainty.intervals.step_kind``), for the locally weighted quantiles."""
    out: dict = {}
    for r in rows:
        sd = float(r.get(f"coef_sd_{step_kind(r['metric'])}", math.nan))
        out.setdefault(r["regime"], {}).setdefault(r["metric"], []).append(float(f"{sd:.4g}"))
    return out


def build_section(*, observations: Sequence[Observation], cluster: ClusterSpec, coefficients: Coefficients,
                  prior: Coefficients, transfer: Sequence[tuple[str, ClusterSpec, Sequence[Observation]]] = (),
                  command: str = "", progress: Callable[[str], None] | None = None, workers: int | None = 1,
                  anchors=None, model_transfer: bool = False,
                  borrowed_model_transfer: tuple[str, dict] | None = None) -> tuple[dict, pd.DataFrame]:
    """(the ``uncertainty:`` section, the per-run rows of every cross-validation and transfer set). ``anchors``
    go to every fit (as ``calibrate fit --anchors``); ``model_transfer`` adds the residuals of
    calibrate/fit/transfer.py's cases (fits on some models predicting the others) and the kernel paths of the runs;
    ``borrowed_model_transfer`` = (name, another profile's ``residuals``) stands in for them where this profile's
    runs are of one model (module docstring)."""
    if progress:
        progress(f"full fit on {len(observations)} runs for the covariance")
    fitter = CoefficientFitter(cluster, prior, anchors=anchors).fit(observations)
    cov = fitter.covariance_
    rows = cross_validated_rows(observations, cluster, prior, cov, by="kfold", cv="kfold", progress=progress,
                                workers=workers, anchors=anchors)
    section: dict = {
        "generated_by": command,
        "models": sorted({o.model_name for o in observations}),
        "engine_generations": sorted({str(o.engine.engine_generation) for o in observations}),
        "covariance": ({"names": list(cov[0]), "matrix": [[float(f"{v:.6g}") for v in row] for row in cov[1]]}
                       if cov is not None else None),
        "coefficient_sd_reference": ({regime: {k: float(f"{v:.6g}") for k, v in by_kind.items()}
                                      for regime, by_kind in coefficient_sd_reference(pd.DataFrame(rows)).items()}
                                     if rows else {}),
        "residuals": {"seen_model": grouped(rows)},
        "residual_scales": {"seen_model": grouped_scales(rows)},
        "transfer": [],
    }
    if len({o.model_name for o in observations}) > 1:
        lomo = cross_validated_rows(observations, cluster, prior, cov, by="model", cv="leave-one-model-out",
                                    progress=progress, workers=workers, anchors=anchors)
        section["residuals"]["unseen_model"] = grouped(lomo)
        rows += lomo
    if model_transfer and len({o.model_name for o in observations}) > 1:
        from calibrate.fit.transfer import transfer_rows
        from perfmodel.uncertainty.intervals import kernel_path

        if progress:
            progress("model transfer: fits on some models predicting the others (calibrate/fit/transfer.py)")
        moved = [dict(r, cv="model-transfer", fold=r["case"]) for case in transfer_rows(
            observations, cluster, workers=workers or 1, prior=prior, anchors=anchors) for r in case]
        section["residuals"]["model_transfer"] = grouped(moved)
        section["kernel_paths"] = sorted({kernel_path(o.precision) for o in observations})
        rows += moved
    if borrowed_model_transfer is not None and "model_transfer" not in section["residuals"]:
        from perfmodel.uncertainty.intervals import kernel_path

        source, residuals = borrowed_model_transfer
        section["residuals"]["model_transfer"] = borrowed_transfer_pool(section["residuals"]["seen_model"], residuals)
        section["model_transfer_source"] = source
        section["kernel_paths"] = sorted({kernel_path(o.precision) for o in observations})
    for name, other_cluster, other in transfer:
        if progress:
            progress(f"transfer: {len(other)} runs of {name} with these coefficients")
        t_rows = residual_rows(other, coefficients, cov, cv=f"transfer:{name}", fold=name)
        device = "cpu" if other_cluster.gpu.name.startswith("cpu") else "gpu"
        section["transfer"].append({
            "name": name, "gpu": other_cluster.gpu.name, "device": device,
            "engine_generations": sorted({str(o.engine.engine_generation) for o in other}),
            "models": sorted({o.model_name for o in other}), "residuals": grouped(t_rows, by_regime=False)})
        rows += t_rows
    return section, pd.DataFrame(rows)


def borrowed_transfer_pool(own: dict, borrowed: dict, points: int = TRANSFER_QUANTILES) -> dict:
    """{regime: {metric: residuals}} of a new model on this profile's GPU, where its runs are of one model: the
    error of a run unseen (``own``, its k-fold residuals) and the error of a model unseen (``borrowed``: another
    profile's model-transfer and leave-one-model-out residuals of throughput) are taken as independent, so the
    pool is their sum over every pair of an own residual and one of ``points`` quantiles of the borrowed ones (a
    discretised convolution; the borrowed ones hold that profile's own k-fold error too, so it is on the wide
    side). A throughput too high is a time too short: the borrowed residual enters time-like metrics negated."""
    values = [v for pool in ("model_transfer", "unseen_model") for by_metric in (borrowed.get(pool) or {}).values()
              for v in by_metric.get("tokens_per_second", [])]
    if not values:
        return {}
    shifts = np.quantile(np.asarray(values, dtype=float), (np.arange(points) + 0.5) / points)
    out: dict = {}
    for regime_key, by_metric in own.items():
        for metric, residuals in by_metric.items():
            sign = 1.0 if "per_s" in metric else -1.0  # rates (tokens/s, decode speed) vs times
            out.setdefault(regime_key, {})[metric] = [round(float(r + sign * t), DIGITS)
                                                      for r in residuals for t in shifts]
    return out


def median_abs(rows: pd.DataFrame) -> dict[str, float]:
    """Median |log residual| per metric (a quick summary for the command's output)."""
    return {m: float(np.median(np.abs(g["log_residual"]))) for m, g in rows.groupby("metric")}
