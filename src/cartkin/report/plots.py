"""Report figures (matplotlib, Agg backend): regimen comparison and single simulations.

Each function writes PNG files and returns their paths. Colours are fixed per arm so the same arm has
the same colour in every figure.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = ["#1b9e77", "#66a61e", "#d95f02", "#e6ab02", "#7570b3", "#e7298a", "#a6761d", "#666666"]
DPI = 150


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _band(ax, times, curves, colour, label, log: bool, floor: float | None = None):
    ok = np.all(np.isfinite(curves), axis=1)
    c = curves[ok]
    if c.size == 0:
        return
    lo, med, hi = np.percentile(c, [5, 50, 95], axis=0)
    if log and floor is not None:
        lo, med, hi = (np.maximum(x, floor) for x in (lo, med, hi))
    ax.fill_between(times, lo, hi, color=colour, alpha=0.18, linewidth=0)
    ax.plot(times, med, color=colour, linewidth=1.8, label=label)


def comparison_figures(comparison, outdir: Path) -> list[Path]:
    """kinetics.png, blasts.png, exposure.png, response.png, relapse_free.png (what the model supports)."""
    outdir.mkdir(parents=True, exist_ok=True)
    s = comparison.scenario
    o = s.outcomes
    arms = comparison.arms
    n = s.population.n
    paths = []

    # 1. exposure observable over time, median and 90% band, log axis
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, res in enumerate(arms):
        _band(ax, res.times, res.curves[o.exposure], _colour(i), res.arm.name, log=True, floor=o.limit / 100)
    ax.set_yscale("log")
    ax.axhline(o.limit, color="grey", linestyle=":", linewidth=1, label=f"limit {o.limit:g}")
    ax.set_xlabel("days after infusion")
    unit = _unit(s.model, o.exposure)
    ax.set_ylabel(f"{o.exposure} ({unit})")
    ax.set_title(f"{o.exposure}: median and 90% range, {n} virtual patients per arm")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, which="both", linewidth=0.4)
    paths.append(_save(fig, outdir / "kinetics.png"))

    # 2. blast % over time
    if o.blast:
        fig, ax = plt.subplots(figsize=(8, 5))
        for i, res in enumerate(arms):
            _band(ax, res.times, res.curves[o.blast], _colour(i), res.arm.name, log=True, floor=1e-4)
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 100)
        ax.axhline(o.response_threshold, color="black", linestyle="--", linewidth=1,
                   label=f"response threshold {o.response_threshold:g}%")
        ax.axhline(o.mrd_threshold, color="grey", linestyle=":", linewidth=1, label=f"MRD {o.mrd_threshold:g}%")
        ax.set_xlabel("days after infusion")
        ax.set_ylabel(f"{o.blast} (%)  [floored at 1e-4]")
        ax.set_title("Marrow blasts: median and 90% range")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3, which="both", linewidth=0.4)
        paths.append(_save(fig, outdir / "blasts.png"))

    # 3. Cmax and AUC0-28 distributions per arm
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, key, label in ((axes[0], "cmax", f"Cmax ({unit})"), (axes[1], "auc_0_28", f"AUC0–28 ({unit}·d)")):
        data = [res.outcomes[key][np.isfinite(res.outcomes[key]) & (res.outcomes[key] > 0)] for res in arms]
        parts = ax.boxplot(data, patch_artist=True, showfliers=False, whis=(5, 95))
        for i, box in enumerate(parts["boxes"]):
            box.set_facecolor(_colour(i))
            box.set_alpha(0.6)
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(arms) + 1), [_short(r.arm.name) for r in arms], rotation=20, ha="right",
                      fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' (')[0]} per arm (box: quartiles, whiskers: 5–95%)", fontsize=10)
        ax.grid(alpha=0.3, axis="y", which="both", linewidth=0.4)
    paths.append(_save(fig, outdir / "exposure.png"))

    if o.blast:
        # 4. response bars
        fig, ax = plt.subplots(figsize=(8, 5))
        width = 0.38
        x = np.arange(len(arms))
        resp = [100 * np.nanmean(r.outcomes["response"][r.ok]) for r in arms]
        mrd = [100 * np.nanmean(r.outcomes["mrd_negative"][r.ok]) for r in arms]
        bars1 = ax.bar(x - width / 2, resp, width, color=[_colour(i) for i in x], label=f"response (< {o.response_threshold:g}%)")
        bars2 = ax.bar(x + width / 2, mrd, width, color=[_colour(i) for i in x], alpha=0.5, hatch="//",
                       label=f"MRD-negative (< {o.mrd_threshold:g}%)")
        for bars in (bars1, bars2):
            for b in bars:
                ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, f"{b.get_height():.0f}",
                        ha="center", fontsize=8)
        ax.set_xticks(x, [_short(r.arm.name) for r in arms], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_ylabel("% of virtual patients")
        ax.set_title(f"Response on day {o.response_day:g}")
        ax.legend(fontsize=8, loc="lower right")
        paths.append(_save(fig, outdir / "response.png"))

        # 5. relapse-free curves (every patient followed to the horizon: no censoring)
        fig, ax = plt.subplots(figsize=(8, 5))
        days = np.linspace(o.response_day, s.horizon, 400)
        lowest = 100.0
        for i, res in enumerate(arms):
            ok = res.ok
            responded = res.outcomes["response"][ok] > 0.5
            relapse = res.outcomes["relapse_day"][ok]
            in_response = [np.mean(responded & ~(relapse <= d)) * 100 for d in days]
            ax.step(days, in_response, where="post", color=_colour(i), linewidth=1.8, label=res.arm.name)
            lowest = min(lowest, min(in_response))
        for d in o.relapse_days:
            ax.axvline(d, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(max(0.0, lowest - 10.0), 101)
        ax.set_xlabel("days after infusion")
        ax.set_ylabel("% relapse-free (non-responders count as events)")
        ax.set_title("Relapse-free after day-28 response")
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3, linewidth=0.4)
        paths.append(_save(fig, outdir / "relapse_free.png"))
    return paths


def simulation_figure(result, path: Path, observables=None) -> Path:
    """One patient: each observable in its own panel, log axis for positive quantities."""
    model = result.model
    names = list(observables or model.observables)
    cols = 2 if len(names) > 1 else 1
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        y = result.observable(name)
        positive = np.all(y[np.isfinite(y)] >= 0) and np.nanmax(y) > 0
        ax.plot(result.times, y, color="#1b9e77", linewidth=1.6)
        if positive and np.nanmax(y) / max(np.nanmin(y[y > 0]) if np.any(y > 0) else 1, 1e-300) > 100:
            ax.set_yscale("log")
            ax.set_ylim(max(np.nanmin(y[y > 0]), np.nanmax(y) * 1e-8), np.nanmax(y) * 2)
        ax.set_title(f"{name} ({_unit(model, name)})", fontsize=10)
        ax.set_xlabel("days")
        ax.grid(alpha=0.3, which="both", linewidth=0.4)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{model.name}: {result.regimen.describe()}", fontsize=11)
    return _save(fig, path)


def _unit(model, name: str) -> str:
    for o in model.observable_info:
        if o.name == name:
            return o.unit
    for st in model.states:
        if st.name == name:
            return st.unit
    return "-"


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
