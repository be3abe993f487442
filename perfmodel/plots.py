"""Figures (matplotlib is optional: ``pip install perfmodel[plot]``); imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

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
    ax_occ.set_xlabel("time (s)")
    ax_occ.set_ylabel("sequences in the step")
    ax_occ.set_title("batch occupancy (replica 0)")
    ax_occ.legend()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    try:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
        tmp.replace(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot write plot {path}: {exc}") from None
    finally:
        plt.close(fig)
    return path
