"""Pre-registered vs measured for an online sweep: per run and per metric, the committed point and 90% interval
against the measurement, then the medians (issue 24: the pre-registered online runs' errors come before any refit).

    PYTHONPATH=. python benchmarks/device/compare_online.py data/h200-online2 > data/h200-online2/comparison.md

FOLDER holds predictions.jsonl (committed before the runs) and results.jsonl (the runner's file). Error =
predicted / measured - 1 (signed: + means the model said faster / more, or a longer TTFT).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

# (prediction key, measured key, label), the runner's metric names
METRICS = (("output_tokens_per_second", "output_tokens_per_second", "out tok/s"),
           ("ttft_s_mean", "mean_ttft_s", "TTFT mean"), ("ttft_s_median", "median_ttft_s", "TTFT median"),
           ("tpot_s_mean", "mean_tpot_s", "TPOT mean"), ("itl_s_mean", "mean_itl_s", "ITL mean"),
           ("e2e_s_mean", "mean_e2e_s", "E2E mean"))


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def compare(folder: Path) -> list[dict]:
    """One row per (run, metric) measured: predicted, interval, measured, error, inside."""
    predictions = {p["run_id"]: p for p in _lines(folder / "predictions.jsonl")}
    latest = {r["run_id"]: r for r in _lines(folder / "results.jsonl")}  # the last record of a run counts
    rows = []
    for run_id, rec in latest.items():
        p = predictions.get(run_id)
        if p is None or rec.get("status") != "ok":
            continue
        for key, measured_key, label in METRICS:
            point, measured = p.get(key), (rec.get("metrics") or {}).get(measured_key)
            if not point or not measured:
                continue
            low, high = (p.get("interval") or {}).get(key, (None, None))
            rows.append({"run": p["description"], "group": rec.get("group", ""), "metric": label,
                         "predicted": point, "low": low, "high": high, "measured": measured,
                         "error": point / measured - 1,
                         "inside": None if low is None else low <= measured <= high})
    return rows


def markdown(folder: Path) -> str:
    rows = compare(folder)
    runs = {r["run"] for r in rows}
    out = [f"# {folder.name}: pre-registered online predictions against the measurements", "",
           f"{len(runs)} runs measured and predicted. Error = predicted / measured - 1.", "",
           "| metric | runs | median abs. error | median signed error | inside the 90% interval |",
           "|---|---:|---:|---:|---:|"]
    for _, _, label in METRICS:
        sel = [r for r in rows if r["metric"] == label]
        if not sel:
            continue
        inside = [r["inside"] for r in sel if r["inside"] is not None]
        out.append(f"| {label} | {len(sel)} | {100 * statistics.median(abs(r['error']) for r in sel):.1f}% | "
                   f"{100 * statistics.median(r['error'] for r in sel):+.1f}% | {sum(inside)} of {len(inside)} |")
    out += ["", "| group | metric | predicted | interval | measured | error |", "|---|---|---:|---|---:|---:|"]
    for r in rows:
        interval = "" if r["low"] is None else f"[{r['low']:.4g}, {r['high']:.4g}]"
        out.append(f"| {r['group']} | {r['metric']} | {r['predicted']:.4g} | {interval} | {r['measured']:.4g} | "
                   f"{100 * r['error']:+.1f}%{'' if r['inside'] in (None, True) else ' (outside)'} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown(Path(sys.argv[1])))
