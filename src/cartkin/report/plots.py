"""Report figures (matplotlib, Agg backend): regimen comparison and single simulations.

Each function writes PNG files and returns their paths. `arm_colours` fixes one colour per arm, so the
same arm has the same colour in every figure; arms of the same product (same parameter overrides, e.g.
armored = 1) share a colour family so that product and dose can be told apart at a glance.
"""
from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_hex, to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ..errors import CartkinError  # noqa: E402

COLOURS = ["#1b9e77", "#66a61e", "#d95f02", "#e6ab02", "#7570b3", "#e7298a", "#a6761d", "#666666"]
FAMILIES = ("Greens", "Oranges", "Purples", "Blues", "Reds", "Greys")  # one per product, shades per dose
DPI = 150
BLAST_FLOOR = 1e-4  # % blasts: lower values are drawn at this floor (far below any measurable MRD)
MONTH = 365.25 / 12


def arm_colours(arms) -> list[str]:
    """One colour per arm. Arms with equal parameter overrides share a hue, later arms get darker shades;
    if every arm has the same overrides the qualitative COLOURS are used instead."""
    keys = [tuple(sorted(a.arm.parameters.items())) for a in arms]
    families = list(dict.fromkeys(keys))
    if len(families) == 1:
        return [COLOURS[i % len(COLOURS)] for i in range(len(arms))]
    colours = []
    for i, key in enumerate(keys):
        members = [j for j, k in enumerate(keys) if k == key]
        shades = np.linspace(0.6, 0.95, len(members)) if len(members) > 1 else [0.75]
        cmap = plt.get_cmap(FAMILIES[families.index(key) % len(FAMILIES)])
        colours.append(to_hex(cmap(shades[members.index(i)])))
    return colours


def _save(fig, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # figures made with layout="constrained" lay themselves out
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def comparison_figures(comparison, outdir: Path) -> list[Path]:
    """kinetics.png and exposure.png when the scenario reports the exposure outcome; blasts.png,
    response.png and relapse_free.png when it reports the response outcome; crs.png and relapse_type.png
    for the crs and relapse_type outcomes; trials.png with [trial] replicates."""
    outdir.mkdir(parents=True, exist_ok=True)
    colours = arm_colours(comparison.arms)
    reported = comparison.scenario.outcomes
    paths = []
    if "exposure" in reported:
        paths.append(_kinetics_figure(comparison, colours, outdir / "kinetics.png"))
    if "response" in reported:
        paths.append(_blasts_figure(comparison, colours, outdir / "blasts.png"))
    if "exposure" in reported:
        paths.append(_exposure_figure(comparison, colours, outdir / "exposure.png"))
    if "response" in reported:
        paths.append(_response_figure(comparison, colours, outdir / "response.png"))
        paths.append(_relapse_figure(comparison, colours, outdir / "relapse_free.png"))
    if "crs" in reported:
        paths.append(_crs_figure(comparison, outdir / "crs.png"))
    if "relapse_type" in reported:
        paths.append(_relapse_type_figure(comparison, outdir / "relapse_type.png"))
    if comparison.trials is not None and comparison.trials.counted:
        paths.append(_trials_figure(comparison.trials, colours, outdir / "trials.png"))
    return paths


CRS_COLOURS = ("#f0f0f0", "#fdd49e", "#fc8d59", "#d7301f", "#7f0000")  # grades 0-4


def _stacked(ax, arms, shares, colours, labels) -> None:
    """Stacked % bars, one per arm; each non-zero segment labelled with its value when it has room."""
    x = np.arange(len(arms))
    bottom = np.zeros(len(arms))
    for values, colour, label in zip(shares, colours, labels):
        bars = ax.bar(x, values, 0.6, bottom=bottom, color=colour, edgecolor="0.4", linewidth=0.5, label=label)
        r, g, b_ = to_rgb(colour)
        ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b_ < 0.45 else "black"  # readable on dark segments
        for b, v, y0 in zip(bars, values, bottom):
            if v >= 4:
                ax.text(b.get_x() + b.get_width() / 2, y0 + v / 2, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color=ink)
        bottom = bottom + np.asarray(values)
    ax.set_xticks(x, [_wrap(r.arm.name) for r in arms], fontsize=8)
    ax.set_ylabel("% of virtual patients")


def _crs_figure(comparison, path: Path) -> Path:
    """CRS grade 0-4 per arm as stacked % of solved patients (grades from peak IL-6, an assumption)."""
    o, arms = comparison.scenario.outcomes.get("crs"), comparison.arms
    grades = [r.outcomes["crs_grade"][r.ok] for r in arms]
    shares = [[100 * np.mean(g == k) if g.size else np.nan for g in grades] for k in range(5)]
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    _stacked(ax, arms, shares, CRS_COLOURS, [f"grade {k}" for k in range(5)])
    ax.set_ylim(0, 104)
    limits = "/".join(f"{v:g}" for v in o.thresholds)
    ax.set_title(f"CRS grade (from peak {o.observable}: grades 1–4 at {limits} pg/mL, a modelling assumption)",
                 fontsize=10)
    _legend_below(fig, [Patch(facecolor=c, edgecolor="0.4", label=f"grade {k}") for k, c in enumerate(CRS_COLOURS)],
                  ncol=5)
    return _save(fig, path)


def _relapse_type_figure(comparison, path: Path) -> Path:
    """Relapses by the horizon per arm, split CD19+ / CD19−, as % of solved patients, with the CD19− share
    of relapses above each bar."""
    s, arms = comparison.scenario, comparison.arms
    kinds = [r.outcomes["relapse_type"][r.ok] for r in arms]
    negative = [100 * np.mean(k == 1.0) if k.size else np.nan for k in kinds]
    positive = [100 * np.mean(k == 0.0) if k.size else np.nan for k in kinds]
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    _stacked(ax, arms, [positive, negative], ["#6baed6", "#fd8d3c"], ["CD19+", "CD19−"])
    top = max([p + n for p, n in zip(positive, negative) if np.isfinite(p + n)] + [1.0])  # 1%: no relapses
    for i, (p, n) in enumerate(zip(positive, negative)):
        share = f"{100 * n / (p + n):.0f}% CD19−" if p + n > 0 else "no relapses"
        ax.text(i, p + n + 0.02 * top, share, ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, top * 1.15)
    ax.set_title(f"Relapses by day {s.horizon:g} by type (CD19− blasts are not seen by CAR T)", fontsize=10)
    _legend_below(fig, [Patch(facecolor="#6baed6", edgecolor="0.4", label="CD19+ relapse"),
                        Patch(facecolor="#fd8d3c", edgecolor="0.4", label="CD19− relapse")], ncol=2)
    return _save(fig, path)


def _trials_figure(trials, colours, path: Path) -> Path:
    """One panel per arm: the share of trial replicates with 0..size responders (or the first counted
    outcome), the observed result marked and the replicates at least as good as it drawn solid."""
    counted = trials.counted
    name = "response" if "response" in counted else counted[0]
    observed = next((o for o in trials.observed if o.outcome == name), None)
    size, arms = trials.size, list(trials.values)
    columns = min(len(arms), 3)
    rows = int(np.ceil(len(arms) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), sharex=True, sharey=True,
                             layout="constrained", squeeze=False)
    x = np.arange(size + 1)
    for ax in axes.ravel()[len(arms):]:
        ax.set_visible(False)
    for ax, arm, colour in zip(axes.ravel(), arms, colours):
        counts = trials.values[arm][name]
        share = np.array([np.mean(counts == k) for k in x])
        good = observed.met(x) if observed is not None else np.ones(x.size, dtype=bool)
        ax.bar(x[good], share[good], color=colour, width=0.85)
        ax.bar(x[~good], share[~good], color=colour, alpha=0.35, width=0.85)
        title = _wrap(arm, 34)
        if observed is not None:
            ax.axvline(observed.count, color="black", linestyle="--", linewidth=1)
            p, se = trials.probability(arm, observed)
            title += f"\nP({observed.describe(size)}) = {p:.3f} ± {se:.3f}"
        ax.set_title(title, fontsize=8)
        ax.set_xlim(-0.6, size + 0.6)
    for k, ax in enumerate(axes.ravel()[:len(arms)]):
        if k + columns >= len(arms):  # the lowest panel of its column
            ax.tick_params(labelbottom=True)
            ax.set_xlabel(f"{name} (patients of {size})", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of trials", fontsize=8)
    fig.suptitle(f"{trials.replicates} trials of {size} patients per arm"
                 + (" (dashed: observed; solid bars: at least as good)" if observed is not None else ""), fontsize=9)
    return _save(fig, path)


def _kinetics_figure(comparison, colours, path: Path) -> Path:
    """One panel per arm (median, 90% band, other arms' medians in grey) plus a panel of all medians.

    Separate panels because overlapping translucent bands hide each other. Pre-dose zeros are not drawn
    and the axis starts just below the quantification limit, where the data become meaningful."""
    s, o, arms = comparison.scenario, comparison.scenario.outcomes.get("exposure"), comparison.arms
    t = arms[0].times
    stats = [_percentiles(r.curves[o.observable], r.ok) for r in arms]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every patient failed: all-NaN percentiles
        top = 2 * np.nanmax([hi for _, _, hi in stats])
    floor = o.limit / 3 if o.limit > 0 else top * 1e-5
    if not (np.isfinite(floor) and floor > 0):
        floor = 1e-3
    if not (np.isfinite(top) and top > floor):
        top = floor * 1e4  # nothing to show (no CAR T, or every patient failed): a plain empty axis
    overlay = len(arms) > 1
    fig, axes = _panels(len(arms) + overlay)
    for ax, res, colour, (lo, med, hi) in zip(axes, arms, colours, stats):
        for other in stats:
            ax.plot(t, other[1], color="0.65", linewidth=0.7)
        ax.fill_between(t, np.maximum(lo, floor), hi, where=med > 0, color=colour, alpha=0.3, linewidth=0)
        ax.plot(t, med, color=colour, linewidth=2)
        ax.set_title(res.arm.name, color=colour, fontsize=9, fontweight="bold")
    if overlay:
        for colour, (_, med, _) in zip(colours, stats):
            axes[-1].plot(t, med, color=colour, linewidth=1.6)
        axes[-1].set_title("all arms: medians", fontsize=9)
    for ax in axes:
        ax.axhline(o.limit, color="black", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_ylim(floor, top)
        ax.set_xlim(0, t[-1])
        ax.grid(alpha=0.3, which="major", linewidth=0.4)
    fig.supylabel(_label(s.model, o.observable), fontsize=10)
    _suptitle(fig, f"{_describe(s.model, o.observable)}: median and 90% range, {s.population.n} virtual "
              "patients per arm")
    key = [Line2D([], [], color="0.2", linewidth=2, label="median (arm colour)"),
           Patch(color="0.2", alpha=0.3, label="5th–95th percentile"),
           Line2D([], [], color="black", linestyle=":", label=f"quantification limit "
                  f"{o.limit:g} {_unit(s.model, o.observable)}")]
    if overlay:
        key.insert(2, Line2D([], [], color="0.65", linewidth=0.7, label="other arms' medians"))
    _legend_below(fig, _arm_handles(arms, colours) + key)
    return _save(fig, path)


def _blasts_figure(comparison, colours, path: Path) -> Path:
    """One panel per arm (median and 90% band of marrow blasts, log axis) plus a panel with the % of
    patients above the response and MRD thresholds over time: that panel shows the relapse tail that the
    percentiles hide once the median has fallen to the floor."""
    s, o, arms = comparison.scenario, comparison.scenario.outcomes.get("response"), comparison.arms
    t = arms[0].times
    fig, axes = _panels(len(arms) + 1)
    for ax, res, colour in zip(axes, arms, colours):
        lo, med, hi = (np.maximum(x, BLAST_FLOOR) for x in _percentiles(res.curves[o.observable], res.ok))
        ax.fill_between(t, lo, hi, color=colour, alpha=0.3, linewidth=0)
        ax.plot(t, med, color=colour, linewidth=2)
        ax.axhline(o.threshold, color="black", linestyle="--", linewidth=1)
        ax.axhline(o.mrd_threshold, color="black", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_ylim(BLAST_FLOOR / 2, 100)
        ax.set_title(res.arm.name, color=colour, fontsize=9, fontweight="bold")
    summary = axes[-1]
    for res, colour in zip(arms, colours):
        blasts = res.curves[o.observable][res.ok]
        summary.plot(t, 100 * np.mean(blasts >= o.mrd_threshold, axis=0), color=colour, linewidth=1.8)
        summary.plot(t, 100 * np.mean(blasts >= o.threshold, axis=0), color=colour, linewidth=1,
                     linestyle="--")
    summary.set_ylim(0, 100)
    summary.set_ylabel("% of patients", fontsize=9)
    summary.set_title(f"% with blasts ≥ {o.mrd_threshold:g}% (solid), ≥ {o.threshold:g}% (dashed)",
                      fontsize=9)
    for ax in axes:
        ax.set_xlim(0, t[-1])
        ax.grid(alpha=0.3, linewidth=0.4)
    fig.supylabel(_label(s.model, o.observable), fontsize=10)
    _suptitle(fig, f"Marrow blasts, {s.population.n} virtual patients per arm")
    key = [Line2D([], [], color="0.2", linewidth=2, label=f"median (values < {BLAST_FLOOR:g}% drawn at "
                  f"{BLAST_FLOOR:g}%)"),
           Patch(color="0.2", alpha=0.3, label="5th–95th percentile"),
           Line2D([], [], color="black", linestyle="--", label=f"response threshold {o.threshold:g}%"),
           Line2D([], [], color="black", linestyle=":", label=f"MRD threshold {o.mrd_threshold:g}%")]
    _legend_below(fig, _arm_handles(arms, colours) + key)
    return _save(fig, path)


def _exposure_figure(comparison, colours, path: Path) -> Path:
    """Cmax and AUC0–28 per arm as box plots on a log axis, black median lines, wrapped arm names."""
    s, o, arms = comparison.scenario, comparison.scenario.outcomes.get("exposure"), comparison.arms
    unit = _unit(s.model, o.observable)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    for ax, key, title, label in ((axes[0], "cmax", "Peak, Cmax", f"Cmax ({unit})"),
                                  (axes[1], "auc_0_28", "Exposure days 0–28, AUC0–28", f"AUC0–28 ({unit}·d)")):
        data = [r.outcomes[key][np.isfinite(r.outcomes[key]) & (r.outcomes[key] > 0)] for r in arms]
        parts = ax.boxplot(data, patch_artist=True, showfliers=False, whis=(5, 95),
                           medianprops=dict(color="black", linewidth=2))
        for box, colour in zip(parts["boxes"], colours):
            box.set_facecolor(colour)
            box.set_alpha(0.75)
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(arms) + 1), [_wrap(r.arm.name) for r in arms], fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y", which="both", linewidth=0.4)
    fig.suptitle(f"{_describe(s.model, o.observable)}: {s.population.n} virtual patients per arm "
                 "(box: quartiles, black line: median, whiskers: 5th–95th percentile)", fontsize=10)
    return _save(fig, path)


def _response_figure(comparison, colours, path: Path) -> Path:
    """% responders and % MRD-negative per arm on the response day, values to one decimal."""
    o, arms = comparison.scenario.outcomes.get("response"), comparison.arms
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    width = 0.38
    x = np.arange(len(arms))
    resp = [100 * np.nanmean(r.outcomes["response"][r.ok]) for r in arms]
    mrd = [100 * np.nanmean(r.outcomes["mrd_negative"][r.ok]) for r in arms]
    bars = (ax.bar(x - width / 2, resp, width, color=colours),
            ax.bar(x + width / 2, mrd, width, color=colours, alpha=0.5, hatch="//"))
    for group in bars:
        for b in group:
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, f"{b.get_height():.1f}", ha="center",
                    fontsize=8)
    ax.set_xticks(x, [_wrap(r.arm.name) for r in arms], fontsize=8)
    ax.set_ylim(0, 108)
    ax.set_ylabel("% of virtual patients")
    ax.set_title(f"Response on day {o.day:g}")
    _legend_below(fig, [Patch(color="0.35", label=f"response (blasts < {o.threshold:g}%)"),
                        Patch(facecolor="0.35", alpha=0.5, hatch="//",
                              label=f"MRD-negative (blasts < {o.mrd_threshold:g}%)")])
    return _save(fig, path)


def _relapse_figure(comparison, colours, path: Path) -> Path:
    """% of patients in response and relapse-free over time (every patient followed to the horizon: no
    censoring). The y axis starts at 0 so small differences are not exaggerated; the legend gives the
    values at the reporting days."""
    s, o, arms = comparison.scenario, comparison.scenario.outcomes.get("response"), comparison.arms
    fig, ax = plt.subplots(figsize=(8, 5.2), layout="constrained")
    days = np.linspace(o.day, s.horizon, 400)
    handles = []
    for res, colour in zip(arms, colours):
        responded = res.outcomes["response"][res.ok] > 0.5
        relapse = res.outcomes["relapse_day"][res.ok]
        free = lambda d: 100 * np.mean(responded & ~(relapse <= d))  # noqa: E731
        ax.step(days, [free(d) for d in days], where="post", color=colour, linewidth=1.8)
        values = ", ".join(f"{free(d):.1f}%" for d in o.relapse_days)
        handles.append(Line2D([], [], color=colour, linewidth=1.8, label=f"{res.arm.name}: {values}"))
    for d in o.relapse_days:
        ax.axvline(d, color="grey", linestyle=":", linewidth=1)
        ax.text(d, 3, f" {d / MONTH:.0f} months ", rotation=90, ha="right", va="bottom", fontsize=8,
                color="0.3")
    ax.set_ylim(0, 102)
    ax.set_xlim(0, s.horizon * 1.03)  # a reporting day at the horizon stays visible
    ax.set_xlabel("days after infusion")
    ax.set_ylabel("% of patients in response and relapse-free")
    ax.set_title(f"Relapse-free after day-{o.day:g} response (non-responders count as events)",
                 fontsize=11)
    ax.grid(alpha=0.3, linewidth=0.4)
    months = ", ".join(f"{d / MONTH:.0f}" for d in o.relapse_days)
    days = ", ".join(f"{d:g}" for d in o.relapse_days)
    _legend_below(fig, handles, ncol=1 if len(arms) > 3 else 2,
                  title=f"% relapse-free at {months} months (days {days})")
    return _save(fig, path)


def simulation_figure(result, path: Path, observables=None) -> Path:
    """One patient: each observable in its own panel with its unit; the title gives the regimen and any
    parameter that differs from the model default (e.g. armored=0)."""
    model = result.model
    names = list(observables or model.observables)
    cols = 2 if len(names) > 1 else 1
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.0 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes.flat, names):
        unit = _unit(model, name)
        note = _trajectory(ax, result.times, result.observable(name), unit)
        ax.set_title(_describe(model, name), fontsize=10)
        ax.set_ylabel(unit + note, fontsize=9)
        ax.set_xlabel("days")
        ax.set_xlim(result.times[0], result.times[-1])
        ax.grid(alpha=0.3, linewidth=0.4)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    defaults = model.parameters
    changed = [f"{n}={v:g}" for n, v in zip(model.parameter_names, result.parameters)
               if not np.isclose(v, defaults[n])]
    title = f"{model.name}: {result.regimen.describe()}" + (f"; {', '.join(changed)}" if changed else "")
    fig.suptitle(textwrap.fill(title, 110), fontsize=11)
    return _save(fig, path)


def _trajectory(ax, t, y, unit: str) -> str:
    """Plot one curve with a readable y range; returns a note for the y label ("" or the floor used).

    Non-negative curves spanning more than two decades get a log axis with at most six decades below the
    peak (lower positive values are drawn at that floor, so the curve never leaves the plot, and zeros are
    left out); others a linear axis
    from 0, and a flat curve is labelled as constant instead of getting a magnified axis."""
    finite = y[np.isfinite(y)]
    if finite.size == 0:
        return ""
    top, bottom = finite.max(), finite.min()
    low = finite[finite > 0].min() if top > 0 else 0.0
    note = ""
    if bottom >= 0 and top > 0 and top / low > 100:
        floor = max(low, top * 1e-6)
        if low < floor:
            note = f"  (< {floor:.2g} drawn at {floor:.2g})"
        y = np.where(y > 0, np.maximum(y, floor), np.nan)  # zeros (pre-dose) are not drawn
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, top * 2)
    elif bottom >= 0:
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    if top - bottom <= 1e-9 * max(abs(top), 1e-300):
        ax.text(0.5, 0.5, f"constant: {top:.3g} {unit}", transform=ax.transAxes, ha="center", fontsize=9,
                color="0.3")
    ax.plot(t, y, color=COLOURS[0], linewidth=1.6)
    return note


def _percentiles(curves, ok):
    """5th, 50th and 95th percentile over the patients whose solve succeeded, NaN where none did."""
    c = curves[ok & np.all(np.isfinite(curves), axis=1)]
    if c.shape[0] == 0:
        return (np.full(curves.shape[1], np.nan),) * 3
    lo, med, hi = np.percentile(c, [5, 50, 95], axis=0)
    return lo, np.where(med > 0, med, np.nan), hi


def _panels(n: int, xlabel: str = "days after infusion"):
    """A constrained-layout figure with n small panels (up to 3 per row), unused slots hidden; panels
    with no panel below carry the x label."""
    cols = n if n <= 3 else (2 if n == 4 else 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.8 * cols, 6.5), 2.9 * rows + 1.4), squeeze=False,
                             layout="constrained")
    axes = list(axes.flat)
    for i, ax in enumerate(axes):
        ax.set_visible(i < n)
        if i + cols >= n:
            ax.set_xlabel(xlabel, fontsize=9)
    return fig, axes[:n]


def _suptitle(fig, text: str) -> None:
    """Figure title wrapped to the figure width."""
    fig.suptitle(textwrap.fill(text, int(fig.get_figwidth() * 11)), fontsize=11)


def _arm_handles(arms, colours) -> list:
    return [Line2D([], [], color=c, linewidth=2.5, label=r.arm.name) for r, c in zip(arms, colours)]


def _legend_below(fig, handles, ncol: int | None = None, title: str | None = None) -> None:
    """Legend under the axes, outside the data; by default one column per 3.5 inches of figure width."""
    ncol = ncol or max(1, min(len(handles), int(fig.get_figwidth() // 3.5)))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8,
               frameon=False, title=title, title_fontsize=8)


def _describe(model, name: str) -> str:
    """Plain-words name of an observable or state from the model ("CAR T cells in blood"), trailing
    parenthesised detail removed; the name itself if the model has no description."""
    for item in (*model.observable_info, *model.states):
        if item.name == name and item.description:
            text = re.sub(r"\s*\([^)]*\)$", "", item.description)
            return text[0].upper() + text[1:]
    return name


def _label(model, name: str) -> str:
    unit = _unit(model, name)
    return _describe(model, name) + (f" ({unit})" if unit not in ("", "-") else "")


def _unit(model, name: str) -> str:
    """The model's unit for an observable or state; "-" for a name it does not have."""
    try:
        return model.unit(name)
    except CartkinError:
        return "-"


def _wrap(name: str, width: int = 14) -> str:
    """Arm name broken over lines for tick labels (never truncated)."""
    return textwrap.fill(name, width, break_long_words=False, break_on_hyphens=False)
