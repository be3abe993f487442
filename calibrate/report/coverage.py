"""Coverage of the intervals: the share of held-out measurements inside their interval, and how wide it was.

Reads the per-run rows ``perfmodel calibrate uncertainty --runs-csv`` wrote (one CSV per profile) and rebuilds
every interval the way ``perfmodel.uncertainty.intervals`` does, except that a run's interval never uses residuals of
its own cross-validation fold: for the k-fold and leave-one-model-out rows the residual pool is that of the
other folds (the run, and for leave-one-model-out its model, never informs its own interval); for a transfer
set, of the set's other runs. Then the pre-registered H200 hold-out runs: the prediction committed before
they were measured (``data/h200-holdout/predictions.jsonl``) with the interval of its regime, residuals of the
six runs themselves left out, against what was measured.

The hold-out folders are the caller's (``scripts/intervals_report.py`` names data/h200-holdout*).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from calibrate.report.uncertainty import coefficient_sd_reference, grouped_scales
from perfmodel.uncertainty.intervals import DEFAULT_LEVEL, REPRESENTATIVE_KINDS, figure_bounds

ROOT = Path(__file__).resolve().parents[1]  # the repository: folders under it are shown relative to it

SHOWN = ("tokens_per_second", "output_tokens_per_second", "requests_per_second", "ttft_s_mean", "ttft_s_median",
         "ttft_s_p99", "tpot_s_mean", "tpot_s_median", "tpot_s_p99", "itl_s_mean", "e2e_s_mean", "e2e_s_p99",
         "decode_tokens_per_s_per_request_mean")


def _pool(rows: pd.DataFrame, by_regime: bool) -> dict:
    out: dict = {}
    for (reg, metric), g in rows.groupby(["regime", "metric"]):
        target = out.setdefault(reg if by_regime else "any", {})
        target.setdefault(metric, []).extend(g["log_residual"].tolist())
    return out


def _scale_pool(rows: pd.DataFrame) -> dict:
    """Each residual's coefficient term, shaped and ordered like ``_pool(rows, by_regime=True)`` (the k-fold
    pools' locally weighted quantiles, as a profile's ``residual_scales`` gives them)."""
    return grouped_scales(rows.to_dict("records"))


def interval_of(row, pool: dict, level: float, reference: dict | None = None,
                scales: dict | None = None) -> tuple[float, float] | None:
    """(low, high) of one row's prediction from a residual pool, as perfmodel.uncertainty.intervals builds it; with
    ``reference`` (cross-validated residuals), only the coefficient term's excess over it is added; with
    ``scales`` (k-fold pools), locally weighted quantiles where the pool is large enough."""
    coef_sd = {k: float(row.get(f"coef_sd_{k}", 0.0)) for k in REPRESENTATIVE_KINDS}
    return figure_bounds(float(row["predicted"]), pool, row["metric"], row["regime"], coef_sd, reference or {}, level,
                         scales)


def evaluate(rows: pd.DataFrame, level: float = DEFAULT_LEVEL, pools: dict | None = None,
             reference: dict | None = None, scales: dict | None = None) -> pd.DataFrame:
    """Per row: inside (bool) and relative half-width. Each row's pool (and, for cross-validation, coefficient
    reference; for k-fold, the residuals' coefficient terms) comes from the other folds (CV) or the set's other
    runs (transfer, whole coefficient term); ``pools`` (key -> pool), ``reference`` and ``scales`` (the
    coefficient terms of ``pools``) override that."""
    cv = rows["cv"].iloc[0]
    transfer = cv.startswith("transfer")
    out = []
    for key, test in rows.groupby("run_id" if transfer else "fold"):
        others = rows[rows["run_id" if transfer else "fold"] != key]
        pool = pools[key] if pools else _pool(others, by_regime=not transfer)
        ref = reference if reference is not None else ({} if transfer else coefficient_sd_reference(others))
        weights = scales if pools else (_scale_pool(others) if cv == "kfold" else None)
        for _, row in test.iterrows():
            bounds = interval_of(row if not transfer else {**row, "regime": "any"}, pool, level, ref, weights)
            if bounds is None:
                continue
            lo, hi = bounds
            out.append({**row, "low": lo, "high": hi, "inside": lo <= row["measured"] <= hi,
                        "half_width": (hi - lo) / 2 / row["predicted"]})
    return pd.DataFrame(out)


def summary(evaluated: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (cv, mode, metric), g in evaluated.groupby(["cv", "mode", "metric"], sort=False):
        if metric in SHOWN:
            rows.append({"cv": cv, "mode": mode, "metric": metric, "runs": len(g), "coverage": g["inside"].mean(),
                         "median_half_width": g["half_width"].median()})
    order = {m: i for i, m in enumerate(SHOWN)}
    return pd.DataFrame(rows).sort_values(["cv", "mode", "metric"], key=lambda s: s.map(order) if s.name == "metric"
                                          else s, kind="stable")


def by_regime(evaluated: pd.DataFrame, metric: str = "tokens_per_second") -> pd.DataFrame:
    """Coverage and median half-width of one metric's cross-validated intervals per regime (k-fold and
    leave-one-model-out)."""
    cv = evaluated[~evaluated["cv"].str.startswith("transfer") & (evaluated["metric"] == metric)]
    return (cv.groupby(["cv", "regime"], sort=True)
            .agg(runs=("inside", "size"), coverage=("inside", "mean"), median_half_width=("half_width", "median"))
            .reset_index())


def calibrated_width_on_transfer(own: pd.DataFrame, transfer: pd.DataFrame, level: float) -> pd.DataFrame:
    """The transferred predictions judged with the calibrated (k-fold) interval: what ignoring transfer gives."""
    kfold = own[own["cv"] == "kfold"]
    return evaluate(transfer.assign(cv=transfer["cv"] + " (calibrated width)"), level,
                    pools={r: _pool(kfold, by_regime=True) for r in transfer["run_id"]},
                    reference=coefficient_sd_reference(kfold), scales=_scale_pool(kfold))


def _predictions(folder: Path) -> dict[str, dict]:
    """A folder's pre-registered predictions (``predictions.jsonl``) by run id."""
    return {p["run_id"]: p for p in map(json.loads, (folder / "predictions.jsonl").read_text().splitlines())}


def holdout(rows: pd.DataFrame, level: float, folder: Path) -> pd.DataFrame:
    """The six pre-registered H200 predictions of ``folder`` against their measurements, with their intervals."""
    predictions = _predictions(folder)
    kfold = rows[rows["cv"] == "kfold"]
    others = kfold[~kfold["run_id"].isin(predictions)]
    pool, reference, scales = _pool(others, by_regime=True), coefficient_sd_reference(others), _scale_pool(others)
    out = []
    for _, row in kfold[kfold["run_id"].isin(predictions)].iterrows():
        point = predictions[row["run_id"]].get(row["metric"])
        if row["metric"] not in SHOWN or point is None or not point > 0:
            continue
        bounds = interval_of({**row, "predicted": point}, pool, level, reference, scales)
        if bounds is None:
            continue
        out.append({"run": predictions[row["run_id"]]["description"], "metric": row["metric"],
                    "predicted": point, "low": bounds[0], "high": bounds[1], "measured": row["measured"],
                    "inside": bounds[0] <= row["measured"] <= bounds[1]})
    return pd.DataFrame(out)


def preregistered(folder: Path) -> pd.DataFrame:
    """Measured figures of ``folder/results.jsonl`` against the intervals committed in ``folder/predictions.jsonl``
    before they were measured (nothing rebuilt: the bounds are the committed ones)."""
    from calibrate.records.store import load_records

    predictions = _predictions(folder)
    out = []
    for record in load_records(folder / "results.jsonl", latest_only=True):
        p = predictions.get(record["run_id"])
        if record.get("status") != "ok" or p is None or "interval" not in p:
            continue
        for metric, measured in (record.get("metrics") or {}).items():
            bounds = p["interval"].get(metric)
            if metric in SHOWN and bounds and measured:
                out.append({"run": p["description"], "source": p["interval"].get("source", ""), "metric": metric,
                            "predicted": p[metric], "low": bounds[0], "high": bounds[1], "measured": measured,
                            "inside": bounds[0] <= measured <= bounds[1],
                            "half_width": (bounds[1] - bounds[0]) / 2 / p[metric]})
    return pd.DataFrame(out)


def _preregistered_lines(folder: Path) -> list[str]:
    h = preregistered(folder)
    if h.empty:
        return []
    shown = h[h["metric"] == "tokens_per_second"]
    ape = (shown["predicted"] - shown["measured"]).abs() / shown["measured"]
    by_source = "; ".join(f"{source}: {int(g['inside'].sum())} of {len(g)} inside, median ±{_pct(g['half_width'].median())}"
                          for source, g in shown.groupby("source"))
    shown_path = folder.relative_to(Path.cwd()) if folder.is_absolute() and folder.is_relative_to(Path.cwd()) else folder
    lines = [f"### {folder.name}: intervals committed before the runs (`{shown_path}/`)", "",
             f"{int(h['inside'].sum())} of {len(h)} measured figures inside their interval. Offline throughput: "
             f"{int(shown['inside'].sum())} of {len(shown)} runs inside, median half-width "
             f"±{_pct(shown['half_width'].median())} ({by_source}); median APE of the point "
             f"{100 * ape.median():.1f}%.", "",
             "| run | residuals | predicted tok/s | interval | measured | inside |", "|---|---|---:|---|---:|---|"]
    for _, r in shown.iterrows():
        lines.append(f"| {r.run} | {r.source} | {_num(r.predicted)} | [{_num(r.low)}, {_num(r.high)}] | {_num(r.measured)} | "
                     f"{'yes' if r.inside else '**no**'} |")
    return lines + [""]


def _num(x: float) -> str:
    """A figure as the tables show it: whole units with thousands separators from 100 up (a bound and a
    measurement 0.03% apart must not print alike), else 4 significant digits."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.4g}"


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def markdown(csvs: Sequence[Path], level: float, command: str, *, holdout_dir: Path | None = None,
             preregistered_dirs: Sequence[Path] = ()) -> str:
    """The coverage report; ``holdout_dir``: the first pre-registered H200 set, judged with the k-fold pool;
    ``preregistered_dirs``: sets whose predictions were committed with their intervals before being measured."""
    lines = [f"# Interval coverage ({level:.0%} intervals)", "",
             "Generated by `scripts/intervals.sh` (the last step: `" + command + "`); the method is in "
             "`perfmodel/uncertainty/intervals.py` and `calibrate/report/coverage.py`. *Coverage*: share of held-out measurements "
             "inside their interval (target: the level). *Half-width*: median of (high - low) / 2 / predicted. "
             "Every interval is built without the residuals of its own fold (k-fold: 4 folds by run; "
             "leave-one-model-out: the model's runs; transfer: leave one run out).", ""]
    for path in csvs:
        rows = pd.read_csv(path)
        name = path.stem.replace("intervals-runs-", "")
        evaluated = pd.concat([evaluate(g, level) for _, g in rows.groupby("cv", sort=False)], ignore_index=True)
        for cv in [c for c in rows["cv"].unique() if c.startswith("transfer")]:
            evaluated = pd.concat([evaluated, calibrated_width_on_transfer(rows, rows[rows["cv"] == cv], level)],
                                  ignore_index=True)
        lines += [f"## profile {name}", "", "| cross-validation | mode | metric | runs | coverage | median half-width |",
                  "|---|---|---|---:|---:|---:|"]
        for _, s in summary(evaluated).iterrows():
            lines.append(f"| {s.cv} | {s['mode']} | {s.metric} | {s.runs} | {_pct(s.coverage)} | "
                         f"±{_pct(s.median_half_width)} |")
        lines.append("")
        regimes = by_regime(evaluated)
        if len(regimes):
            lines += ["Throughput (tokens/s) by regime:", "", "| cross-validation | regime | runs | coverage | "
                      "median half-width |", "|---|---|---:|---:|---:|"]
            lines += [f"| {r.cv} | {r.regime} | {r.runs} | {_pct(r.coverage)} | ±{_pct(r.median_half_width)} |"
                      for r in regimes.itertuples()]
            lines.append("")
        if name.startswith("h200") and holdout_dir is not None and (holdout_dir / "predictions.jsonl").exists():
            h = holdout(rows, level, holdout_dir)
            lines += ["### the six pre-registered H200 hold-out runs", "",
                      f"{int(h['inside'].sum())} of {len(h)} measured figures inside their interval.", "",
                      "| run | metric | predicted | interval | measured | inside |", "|---|---|---:|---|---:|---|"]
            for _, r in h.iterrows():
                lines.append(f"| {r.run} | {r.metric} | {_num(r.predicted)} | [{_num(r.low)}, {_num(r.high)}] | "
                             f"{_num(r.measured)} | {'yes' if r.inside else '**no**'} |")
            lines.append("")
        for folder in preregistered_dirs if name.startswith("h200") else ():
            if (folder / "results.jsonl").exists():
                lines += _preregistered_lines(folder)
    return "\n".join(lines)
