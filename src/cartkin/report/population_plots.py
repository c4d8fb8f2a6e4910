"""Figures of a population (SAEM) fit: convergence traces, goodness of fit, individual fits, random effects."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .fit_plots import (KEY, _save_constrained, _style, figure_legend, log_ylim, obs_colour,  # noqa: E402
                        obs_label, panel_grid)
from .plots import COLOURS, _save  # noqa: E402


def population_figures(result, outdir: Path) -> list[Path]:
    """convergence.png, goodness_of_fit.png, individual_fits.png, random_effects.png (+ eta_vs_covariates.png)."""
    outdir.mkdir(parents=True, exist_ok=True)
    rows = result.predictions()
    files = [convergence(result, outdir / "convergence.png"),
             goodness_of_fit(result, rows, outdir / "goodness_of_fit.png"),
             individual_fits(result, outdir / "individual_fits.png"),
             random_effects(result, outdir / "random_effects.png")]
    if result.pm.data.covariate_names:
        files.append(eta_vs_covariates(result, outdir / "eta_vs_covariates.png"))
    return files


def convergence(result, path: Path) -> Path:
    names = result.parameter_names
    traces = result.traces
    k1 = int(result.settings["iterations"][0])
    n = len(names)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    it = np.arange(1, traces.shape[0] + 1)
    for j, (ax, name) in enumerate(zip(axes.flat, names)):
        ax.plot(it, traces[:, j], color=COLOURS[4], linewidth=1)
        ax.axvline(k1, color="grey", linestyle=":", linewidth=1)
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)  # plain linear ticks, no offset
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"SAEM convergence: {k1} exploratory iterations (left of the dotted line), then smoothing",
                 fontsize=10)
    return _save(fig, path)


def _by_observable(rows):
    names = []
    for r in rows:
        if r["DVID"] not in names:
            names.append(r["DVID"])
    return names


def goodness_of_fit(result, rows, path: Path) -> Path:
    """DV vs PRED and vs IPRED (log scales), IWRES vs time and vs IPRED; censored points as ▽ at the limit."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.5))
    names = _by_observable(rows)
    observed = np.array([r["DV"] for r in rows if r["DV"] > 0])
    floor = observed.min() / 100 if observed.size else 1e-3  # predictions below are drawn at it (◁)
    for name in names:
        colour = obs_colour(result.pm.model, name)
        sel = [r for r in rows if r["DVID"] == name]
        dv = np.array([r["DV"] for r in sel])
        cens = np.array([bool(r["CENS"]) for r in sel])
        t = np.array([r["TIME"] for r in sel])
        iwres = np.array([r["IWRES"] for r in sel])
        for ax, key in ((axes[0, 0], "PRED"), (axes[0, 1], "IPRED")):
            pred = np.array([r[key] for r in sel])
            ok = np.isfinite(pred)
            low = ok & (pred < floor)
            shown = np.where(low, floor, pred)
            ax.plot(shown[ok & ~cens & ~low], dv[ok & ~cens & ~low], "o", ms=3.5, alpha=0.7, color=colour,
                    label=name)
            ax.plot(shown[ok & cens & ~low], dv[ok & cens & ~low], "v", ms=4.5, mfc="none", color=colour)
            ax.plot(shown[low], dv[low], "<", ms=4.5, mfc="none", color=colour)
        ipred = np.array([r["IPRED"] for r in sel])
        good = np.isfinite(iwres)
        axes[1, 0].plot(t[good], iwres[good], "o", ms=3.5, alpha=0.7, color=colour, label=name)
        good &= ipred > 0
        axes[1, 1].plot(ipred[good], iwres[good], "o", ms=3.5, alpha=0.7, color=colour, label=name)
    for ax, key in ((axes[0, 0], "population prediction PRED (η = 0)"), (axes[0, 1], "individual prediction IPRED")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        lo = floor / 2
        hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(key)
        ax.set_ylabel("observed DV (▽ censored, at the limit)")
        ax.text(0.98, 0.02, f"◁ prediction < {floor:.2g}", transform=ax.transAxes, ha="right", fontsize=7)
        ax.legend(fontsize=8)
    for ax, label in ((axes[1, 0], "days"), (axes[1, 1], "IPRED")):
        ax.axhline(0, color="k", linewidth=1)
        for y in (-1.96, 1.96):
            ax.axhline(y, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylabel("IWRES")
    axes[1, 1].set_xscale("log")
    axes[0, 0].set_title("Observed vs population prediction", fontsize=10)
    axes[0, 1].set_title("Observed vs individual prediction (conditional mode)", fontsize=10)
    axes[1, 0].set_title("Individual weighted residuals vs time", fontsize=10)
    axes[1, 1].set_title("Individual weighted residuals vs prediction", fontsize=10)
    return _save(fig, path)


def individual_fits(result, path: Path) -> Path:
    pm = result.pm
    model = pm.model
    subjects = pm.data.subjects
    n = len(subjects)
    fig, axes = panel_grid(n)
    used = [model.observables.index(o) for o in pm.observables]
    t_end = max(max(s.times.max() for s in subjects) * 1.02, 1.0)
    grid = np.unique(np.concatenate([np.linspace(0, t_end, 240), np.geomspace(0.05, t_end, 60)]))
    ipred = pm.curves(result.modes, np.arange(n), grid)
    pred = pm.curves(pm.mean_phi(result.estimates.fixed_effects), np.arange(n), grid)
    for i, (ax, subject) in enumerate(zip(axes.flat, subjects)):
        x_end = max(subject.times.max() * 1.15, 7.0)
        shown = grid <= x_end
        data, curves = [], []
        for k in used:
            colour = obs_colour(model, model.observables[k])
            sel = subject.observable_index == k
            obs = sel & ~subject.censored
            cen = sel & subject.censored
            ax.plot(subject.times[obs], subject.values[obs], "o", color=colour, ms=4)
            ax.plot(subject.times[cen], subject.limits[cen], "v", mfc="none", color=colour, ms=5)
            ax.plot(grid, ipred[i, :, k], color=colour, linewidth=1.5)
            ax.plot(grid, pred[i, :, k], color=colour, linewidth=1, linestyle="--")
            data += [subject.values[obs], subject.limits[cen]]
            curves += [ipred[i, shown, k], pred[i, shown, k]]
        ax.set_yscale("log")
        log_ylim(ax, np.concatenate(data), np.concatenate(curves))
        ax.set_xlim(0, x_end)
        _style(ax, f"ID {subject.id}")
    key = KEY + [Line2D([], [], color="0.35", linewidth=1.5, label="individual fit (conditional mode)"),
                 Line2D([], [], color="0.35", linewidth=1, linestyle="--", label="population prediction")]
    figure_legend(fig, model, pm.observables, key, axes.shape[1])
    fig.supylabel(", ".join(obs_label(model, o) for o in pm.observables), fontsize=11)
    fig.suptitle(f"{model.name}: individual fits", fontsize=12)
    return _save_constrained(fig, path)


def random_effects(result, path: Path) -> Path:
    """Histograms of the η modes with their population density N(0, ω²)."""
    pm = result.pm
    q = pm.n_parameters
    eta = result.eta_modes
    cols = min(4, q)
    rows = math.ceil(q / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    shrink = result.shrinkage
    for j, (ax, name) in enumerate(zip(axes.flat, pm.parameters)):
        sd = math.sqrt(result.omega[j, j])
        span = max(4 * sd, np.max(np.abs(eta[:, j])) * 1.1)
        x = np.linspace(-span, span, 200)
        ax.hist(eta[:, j], bins=max(5, min(15, len(eta) // 3)), density=True, color=COLOURS[4], alpha=0.6)
        ax.plot(x, np.exp(-0.5 * (x / sd) ** 2) / (sd * math.sqrt(2 * math.pi)), color="k", linewidth=1.2)
        ax.set_title(f"η {name}: ω {sd:.2f}, shrinkage {shrink[j] * 100:.0f}%", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[q:]:
        ax.set_visible(False)
    fig.suptitle("Random effects: conditional modes (histogram) and their population distribution N(0, ω²)",
                 fontsize=10)
    return _save(fig, path)


def eta_vs_covariates(result, path: Path) -> Path:
    """η modes against each covariate (log axis for positive covariates): where covariate effects show."""
    pm = result.pm
    covariates = pm.data.covariate_names
    q = pm.n_parameters
    eta = result.eta_modes
    fig, axes = plt.subplots(len(covariates), q, figsize=(3.0 * q, 2.6 * len(covariates)), squeeze=False)
    for a, cov in enumerate(covariates):
        values = np.array([s.covariates.get(cov, np.nan) for s in pm.data.subjects])
        for j, name in enumerate(pm.parameters):
            ax = axes[a, j]
            ax.plot(values, eta[:, j], "o", ms=4, color=COLOURS[j % len(COLOURS)], alpha=0.8)
            ax.axhline(0, color="k", linewidth=0.8)
            if np.all(values > 0):
                ax.set_xscale("log")
            ax.set_xlabel(cov, fontsize=8)
            ax.set_ylabel(f"η {name}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("Random effects (conditional modes) against covariates", fontsize=10)
    return _save(fig, path)
