"""The visual predictive check figure: percentiles of the data against simulated intervals, per observable."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OUTER = "#3b75af"   # simulated 5th and 95th percentile intervals
MEDIAN = "#d62728"  # simulated median interval and the observed percentiles


def _labels(model_name: str, names) -> dict:
    """Axis labels with the model's units ("nTA (cells/µL)"); the bare names for a model not built in."""
    from ..errors import CartkinError
    from ..model.registry import load_model
    from .fit_plots import obs_label
    try:
        model = load_model(model_name)
    except CartkinError:
        return {n: n for n in names}
    return {n: obs_label(model, n) for n in names}


def vpc_figure(result, path: Path, dpi: int = 110) -> Path:
    """One column per observable: observed points, observed 5/50/95th percentiles (lines) and the
    simulated intervals of the same percentiles (bands); below it, the fraction below the limit."""
    checks = result.checks
    censoring = any(c.has_censoring for c in checks)
    rows = 2 if censoring else 1
    fig, axes = plt.subplots(rows, len(checks), figsize=(5.6 * len(checks), 4.9 + 1.9 * (rows - 1)),
                             squeeze=False, gridspec_kw={"height_ratios": [3, 1.3][:rows]},
                             layout="constrained")
    pct = int(round(result.interval * 100))
    labels = _labels(result.model_name, [c.name for c in checks])
    for col, c in enumerate(checks):
        ax = axes[0, col]
        x = c.centre
        ok_pts = ~c.censored
        ax.plot(c.times[ok_pts], c.values[ok_pts], "o", ms=2.8, color="0.45", alpha=0.55, label="observed")
        if np.any(c.censored):
            ax.plot(c.times[c.censored], c.values[c.censored], "v", ms=3.5, mfc="none", color="0.45", alpha=0.7,
                    label="censored (at limit)")
        for p, colour in ((0, OUTER), (1, MEDIAN), (2, OUTER)):
            band = c.simulated[:, p, :]
            ax.fill_between(x, band[:, 0], band[:, 2], color=colour, alpha=0.22, linewidth=0,
                            label={0: f"simulated {pct}% interval of the 5th / 95th",
                                   1: f"simulated {pct}% interval of the median"}.get(p))
        for p, style in ((0, "--"), (1, "-"), (2, "--")):
            values = c.observed[:, p].copy()
            below = np.isfinite(c.limit) & (values <= c.limit * (1 + 1e-12))
            values[below] = np.nan
            ax.plot(x, values, style, color=MEDIAN if p == 1 else "k", linewidth=1.6 if p == 1 else 1.2,
                    marker="o" if p == 1 else None, ms=3,
                    label={0: "observed 5th / 95th percentiles", 1: "observed median"}.get(p))
        if np.any(np.isfinite(c.limit)):
            ax.plot(x, c.limit, ":", color="k", linewidth=1, label="limit of quantification")
        ax.set_yscale("log")
        positive = c.values[c.values > 0]
        if positive.size:
            lo = max(positive.min() / 5, np.nanmin(c.simulated[:, 0, 0]) / 2) if np.any(
                np.isfinite(c.simulated[:, 0, 0]) & (c.simulated[:, 0, 0] > 0)) else positive.min() / 5
            ax.set_ylim(lo, max(positive.max(), np.nanmax(c.simulated[:, 2, 2])) * 3)
        ax.set_xlim(0, c.edges[-1] * 1.03)
        title = ("prediction-corrected " if result.prediction_corrected else "") + f"{c.name}"
        ax.set_title(f"{title} ({result.replicates} replicates)", fontsize=10)
        ax.set_xlabel("days")
        ax.set_ylabel(labels[c.name] + (", prediction-corrected" if result.prediction_corrected else ""))
        for e in c.edges[1:-1]:
            ax.axvline(e, color="0.85", linewidth=0.6, zorder=0)
        if censoring:
            ax2 = axes[1, col]
            ax2.fill_between(x, c.simulated_censored[:, 0], c.simulated_censored[:, 2], color=OUTER, alpha=0.25,
                             linewidth=0, label=f"simulated {pct}% interval")
            ax2.plot(x, c.simulated_censored[:, 1], color=OUTER, linewidth=1, label="simulated median")
            ax2.plot(x, c.observed_censored, "o-", color=MEDIAN, ms=3, linewidth=1.2, label="observed")
            ax2.set_ylim(-0.03, 1.03)
            ax2.set_xlim(0, c.edges[-1] * 1.03)
            ax2.set_ylabel("fraction < limit", fontsize=9)
            ax2.set_xlabel("days")
            if col == 0:
                ax2.legend(fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=4 if len(checks) > 1 else 2, fontsize=9,
               frameon=False)
    fig.suptitle(f"{result.model_name}: visual predictive check — observed percentiles (lines) vs "
                 f"simulated {pct}% intervals (bands)", fontsize=11)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path

