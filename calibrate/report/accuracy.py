"""The accuracy report: error tables in Markdown and a parity plot (PNG)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from calibrate.report.check import ErrorSummary, summarize
from perfmodel.analysis.plots import save_figure

METRIC_LABELS = {
    "tokens_per_second": "offline throughput (tok/s)", "output_tokens_per_second": "output throughput (tok/s)",
    "requests_per_second": "requests/s", "kv_cache_tokens": "KV cache tokens", "ttft_s_mean": "TTFT mean (s)",
    "ttft_s_median": "TTFT median (s)", "tpot_s_mean": "TPOT mean (s)", "tpot_s_median": "TPOT median (s)",
    "itl_s_mean": "ITL mean (s)", "e2e_s_mean": "E2E mean (s)",
    "decode_tokens_per_s_per_request_mean": "decode speed per request (tok/s)",
}


def headline_metric(frames: dict[str, pd.DataFrame]) -> str:
    """The throughput the runs measured: offline tokens/s, else (online-only data) output tokens/s."""
    for metric in ("tokens_per_second", "output_tokens_per_second"):
        if any(not f.empty and (f["metric"] == metric).any() for f in frames.values()):
            return metric
    return "tokens_per_second"


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def summary_table(summaries: Sequence[ErrorSummary]) -> str:
    lines = ["| metric | runs | median APE | p90 APE | median APE with measured KV |", "|---|---:|---:|---:|---:|"]
    for s in summaries:
        lines.append(f"| {METRIC_LABELS.get(s.metric, s.metric)} | {s.num_runs} | {_pct(s.median_ape)} | "
                     f"{_pct(s.p90_ape)} | {_pct(s.median_ape_measured_kv)} |")
    return "\n".join(lines)


def runs_table(frame: pd.DataFrame, metrics: Sequence[str] = ("tokens_per_second", "kv_cache_tokens")) -> str:
    rows = frame[frame["metric"].isin(metrics)]
    lines = ["| model | layout | mode | eager | seqs | in | out | metric | measured | predicted | APE |",
             "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows.itertuples():
        lines.append(f"| {r.model} | {r.layout} | {r.mode} | {'yes' if r.eager else 'no'} | {r.max_num_seqs} | "
                     f"{r.input_len:.0f} | {r.output_len:.0f} | {r.metric} | {r.measured:,.4g} | "
                     f"{r.predicted:,.4g} | {_pct(r.ape)} |")
    return "\n".join(lines)


def _tick(value: float) -> str:
    """A tick label a reader takes in at a glance: 500, 20k, 2M, 0.05."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:.3g}"


def parity_plot(frames: dict[str, pd.DataFrame], path: str | Path,
                metrics: Sequence[str] = ("tokens_per_second", "kv_cache_tokens", "ttft_s_mean", "tpot_s_mean"),
                title: str = "perfmodel") -> Path | None:
    """Predicted against measured, log-log, one panel per metric, one colour per fold kind."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    def measured(metric: str) -> bool:
        return any(not f.empty and (f["metric"] == metric).any() for f in frames.values())

    present = [m for m in metrics if measured(m)]
    if "tokens_per_second" not in present and measured("output_tokens_per_second"):  # online-only data
        present.insert(0, "output_tokens_per_second")
    if measured("decode_tokens_per_s_per_request_mean"):  # the Taiwania 2 log's per-request decode speed
        present.append("decode_tokens_per_s_per_request_mean")
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], present):
        lo, hi = math.inf, 0.0
        for i, (label, frame) in enumerate(frames.items()):
            rows = frame[(frame["metric"] == metric) & frame["predicted"].notna()] if not frame.empty else frame
            if rows.empty:
                continue
            # the first fold kind (the in-sample fit) as small filled dots on top, the others as hollow markers
            # of their own shape, so that one kind does not hide another where they agree
            style = (dict(s=10, c=f"C{i}", zorder=3) if i == 0 else
                     dict(s=26, marker="os^D"[i % 4], facecolors="none", edgecolors=f"C{i}", linewidths=0.9))
            ax.scatter(rows["measured"], rows["predicted"], alpha=0.8, label=label, **style)
            lo = min(lo, rows["measured"].min(), rows["predicted"].min())
            hi = max(hi, rows["measured"].max(), rows["predicted"].max())
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            ax.plot([lo, hi], [lo * 1.1, hi * 1.1], "k:", lw=0.6)
            ax.plot([lo, hi], [lo / 1.1, hi / 1.1], "k:", lw=0.6)
            ax.set_xscale("log")
            ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # labels at 1, 2, 5 x 10^k: a panel often spans less than a decade
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: _tick(v)))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(METRIC_LABELS.get(metric, metric))
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: predicted vs measured (dotted: ±10%)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, plt, path)


def fold_table(frame: pd.DataFrame, metric: str = "tokens_per_second") -> str:
    """Median error of ``metric`` per held-out group."""
    rows = frame[frame["metric"] == metric]
    lines = [f"| held out | runs | median APE ({METRIC_LABELS.get(metric, metric)}) | max APE |", "|---|---:|---:|---:|"]
    for fold, group in rows.groupby("fold"):
        lines.append(f"| {fold.split(':', 1)[-1]} | {len(group)} | {_pct(group['ape'].median())} | "
                     f"{_pct(group['ape'].max())} |")
    return "\n".join(lines)


def weakest_runs(frame: pd.DataFrame, metric: str, count: int = 8) -> str:
    rows = frame[frame["metric"] == metric].sort_values("ape", ascending=False).head(count)
    if rows.empty:
        return ""
    lines = [f"| model | layout | eager | seqs | in | out | measured | predicted | APE | fold |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows.itertuples():
        lines.append(f"| {r.model} | {r.layout} | {'yes' if r.eager else 'no'} | {r.max_num_seqs} | {r.input_len:.0f} | "
                     f"{r.output_len:.0f} | {r.measured:,.4g} | {r.predicted:,.4g} | {_pct(r.ape)} | {r.fold} |")
    return "\n".join(lines)


def markdown_report(*, title: str, header: str, frames: dict[str, pd.DataFrame], plot: Path | None,
                    appendix: str = "", command: str = "") -> str:
    parts = [f"# {title}", "", header, ""]
    if command:
        parts += ["Regenerate with:", "", f"    {command}", ""]
    headline = headline_metric(frames)
    for label, frame in frames.items():
        parts += [f"## {label}", "", summary_table(summarize(frame)), ""]
        if label.startswith("leave-") or label.endswith("-fold"):
            parts += [fold_table(frame, headline), ""]
    if plot is not None:
        parts += [f"![parity plot]({plot.name})", ""]
    cross = [f for label, f in frames.items() if label.startswith("leave-") or label.endswith("-fold")]
    if cross:
        worst = pd.concat(cross, ignore_index=True)
        parts += [f"## Weakest cross-validated predictions of {METRIC_LABELS[headline].split(' (')[0]}", "",
                  weakest_runs(worst, headline), ""]
    if appendix:
        parts += [appendix.strip(), ""]
    in_sample = next(iter(frames.values()))
    if not in_sample.empty:
        parts += ["## Per run (in-sample fit)", "", runs_table(in_sample, (headline, "kv_cache_tokens")), ""]
    return "\n".join(parts)
