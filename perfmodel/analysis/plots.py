"""Figures (matplotlib is optional: ``pip install perfmodel[plot]``); imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from perfmodel.atomic import atomic_path
from perfmodel.errors import UserError


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_compare(results: Mapping[str, object], path: str | Path, *, title: str = "") -> Path:
    """Three panels for ``{policy: SimResult}`` (timelines recorded): output tokens/s per policy, the CDF of
    end-to-end latency per policy, and replica 0's running sequences per step over time. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    path = Path(path)
    colors = {"continuous": "tab:blue", "static": "tab:orange"}
    fig, (ax_tp, ax_cdf, ax_occ) = plt.subplots(1, 3, figsize=(15, 4.2))
    names = list(results)
    values = [results[n].metrics.output_tokens_per_second for n in names]
    bars = ax_tp.bar(names, values, color=[colors.get(n, "tab:gray") for n in names])
    ax_tp.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
    ax_tp.set_ylabel("output tokens/s")
    ax_tp.set_title("throughput")
    for name in names:
        e2e = np.sort(results[name].requests.e2e_s)
        ax_cdf.plot(e2e, np.arange(1, len(e2e) + 1) / len(e2e), label=name, color=colors.get(name))
        timeline = results[name].timeline
        if timeline is not None and len(timeline):
            steps = timeline[timeline["replica"] == 0]
            ax_occ.step(steps["start_s"], steps["num_seqs"], where="post", label=name, color=colors.get(name),
                        linewidth=0.8)
    ax_cdf.set_xlabel("end-to-end latency (s)")
    ax_cdf.set_ylabel("fraction of requests")
    ax_cdf.set_title("latency distribution (CDF)")
    ax_cdf.legend()
    for ax in (ax_cdf, ax_occ):  # at most 6 labelled ticks: long runs' labels never run into each other
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=6))
    ax_occ.set_xlabel("time (s)")
    ax_occ.set_ylabel("sequences in the step")
    ax_occ.set_title("batch occupancy (replica 0)")
    ax_occ.legend()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, plt, path)


def save_figure(fig, plt, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file renamed) and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot write plot {path}: {exc}") from None
    finally:
        plt.close(fig)
    return path


def plot_pareto(points, path: str | Path, *, title: str = "") -> Path:
    """Output tokens/s per GPU against tokens/s per user for ``perfmodel.analysis.pareto.ParetoPoint``s: every point in
    grey, the frontier as a line with each point labelled (layout, max_num_seqs). Per-user speed on a log axis
    (max_num_seqs grows geometrically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    path = Path(path)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    rest = [p for p in points if not p.on_frontier]
    front = sorted((p for p in points if p.on_frontier), key=lambda p: p.output_tokens_per_second_per_user)
    ax.scatter([p.output_tokens_per_second_per_user for p in rest], [p.output_tokens_per_second_per_gpu for p in rest],
               s=14, color="0.7", label="other layouts x max_num_seqs", zorder=1)
    xs = [p.output_tokens_per_second_per_user for p in front]
    ys = [p.output_tokens_per_second_per_gpu for p in front]
    ax.plot(xs, ys, "-o", color="tab:blue", markersize=6, label="Pareto frontier", zorder=2)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("output tokens/s per user (1 / median TPOT), log scale")
    ax.set_ylabel("output tokens/s per GPU")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.12, y=0.1)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _label_without_overlap(fig, ax, [f"TP{p.tp} PP{p.pp} DP{p.dp}, {p.max_num_seqs} seqs" for p in front], xs, ys)
    return save_figure(fig, plt, path)


def _label_without_overlap(fig, ax, labels: list[str], xs: list[float], ys: list[float]) -> None:
    """Label each point up and to the right, moving a label up (a leader line back to its point) until its box
    overlaps no earlier label and no marker; a label that would leave the axes goes to the left instead."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    markers = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    placed = []
    style = dict(textcoords="offset points", fontsize=8, color="tab:blue",
                 bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85))
    for label, x, y in zip(labels, xs, ys):
        spot = None
        for side in (1, -1):
            for step in range(30):
                offset, ha = (side * 10, 6 + 11 * step), "left" if side > 0 else "right"
                probe = ax.annotate(label, (x, y), xytext=offset, ha=ha, **style)  # measured without its line
                box = probe.get_window_extent(renderer).expanded(1.04, 1.2)
                probe.remove()
                inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
                if inside and not any(box.overlaps(b) for b in placed) and not any(box.contains(*m) for m in markers):
                    spot = offset, ha
                    break
            if spot:
                break
        offset, ha = spot or ((10, 6), "left")
        ax.annotate(label, (x, y), xytext=offset, ha=ha, **style,
                    arrowprops=dict(arrowstyle="-", color="tab:blue", lw=0.5, alpha=0.6))
        if spot:
            placed.append(box)


def plot_hardware_comparison(choices, path: str | Path, *, title: str = "") -> Path:
    """Bars per hardware (``perfmodel.analysis.plan_compare.HardwareChoice``, ranked): cost per million output tokens when
    every answer has a price, else GPU-hours per million output tokens; each bar labelled with its GPUs and
    layout. Hardware that cannot serve the load gets an empty slot labelled so. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    served = [c for c in choices if c.gpus]
    priced = bool(served) and all(c.cost_per_million_output_tokens is not None for c in served)
    values = [(c.cost_per_million_output_tokens if priced else c.gpu_hours_per_million_output_tokens)
              if c.gpus else 0.0 for c in choices]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(choices) + 2), 4.2))
    bars = ax.bar([c.hardware for c in choices], values,
                  color=["tab:green" if i == 0 and c.gpus else "tab:blue" if c.gpus else "tab:gray"
                         for i, c in enumerate(choices)])
    ax.bar_label(bars, labels=[f"{v:.3g}\n{c.gpus} GPUs, {c.layout}" if c.gpus else "does not serve the load"
                               for v, c in zip(values, choices)], fontsize=8)
    ax.set_ylabel("cost per million output tokens" if priced else "GPU-hours per million output tokens")
    ax.set_ylim(0, max(values + [1e-9]) * 1.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, plt, path)
