"""Diagnostic figures for individual fits: fits per subject, observed vs predicted, residuals vs time."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .plots import COLOURS, _save  # noqa: E402


def fit_figures(result, outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    return [_individual(result, outdir / "individual_fits.png"),
            _observed_vs_predicted(result, outdir / "observed_vs_predicted.png"),
            _residuals(result, outdir / "residuals_vs_time.png")]


def _individual(result, path: Path) -> Path:
    problem = result.problem
    subjects = result.data.subjects
    n = len(subjects)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    used = [result.model.observables.index(o) for o in problem.observables]
    for ax, fit, subject in zip(axes.flat, result.fits, subjects):
        t_end = max(subject.times.max() * 1.05, 1.0)
        grid = np.linspace(0, t_end, 200)[1:]
        for c, k in enumerate(used):
            colour = COLOURS[c % len(COLOURS)]
            sel = subject.observable_index == k
            obs_sel = sel & ~subject.censored
            cens_sel = sel & subject.censored
            ax.plot(subject.times[obs_sel], subject.values[obs_sel], "o", color=colour, ms=4,
                    label=result.model.observables[k])
            ax.plot(subject.times[cens_sel], subject.limits[cens_sel], "v", mfc="none", color=colour, ms=5)
            if not np.all(np.isfinite(fit.estimates)):
                continue
            pred, grad = problem.predict(subject, fit.parameters, grid, np.full(grid.size, k))
            if pred is None:
                continue
            ax.plot(grid, pred, color=colour, linewidth=1.4)
            # 95% band of the individual prediction (delta method on the log scale)
            q = len(result.free)
            with np.errstate(divide="ignore", invalid="ignore"):
                se_log = fit.standard_errors[:q] / fit.estimates[:q]
                cov = fit.correlation[:q, :q] * np.outer(se_log, se_log)
                g = grad * fit.parameters[problem.free_index] / pred[:, None]
                sd = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", g, np.nan_to_num(cov), g), 0, 25))
            ok = np.isfinite(sd) & (pred > 0)
            ax.fill_between(grid[ok], pred[ok] * np.exp(-1.96 * sd[ok]), pred[ok] * np.exp(1.96 * sd[ok]),
                            color=colour, alpha=0.15, linewidth=0)
        ax.set_yscale("log")
        positive = subject.values[subject.values > 0]
        if positive.size:
            ax.set_ylim(positive.min() / 20, positive.max() * 20)
        ax.set_title(f"ID {subject.id}" + ("" if fit.converged else " (not converged)"), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("days", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{result.model.name}: individual fits (line), 95% band, observed (●), censored at limit (▽)",
                 fontsize=10)
    return _save(fig, path)


def _observed_vs_predicted(result, path: Path) -> Path:
    rows = result.predictions()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    names = sorted({r["DVID"] for r in rows})
    lo, hi = np.inf, 0.0
    for c, name in enumerate(names):
        sel = [r for r in rows if r["DVID"] == name and not r["CENS"] and r["IPRED"] > 0]
        if not sel:
            continue
        obs = np.array([r["DV"] for r in sel])
        pred = np.array([r["IPRED"] for r in sel])
        ax.plot(pred, obs, "o", ms=4, alpha=0.7, color=COLOURS[c % len(COLOURS)], label=name)
        lo, hi = min(lo, obs.min(), pred.min()), max(hi, obs.max(), pred.max())
    if hi > 0:
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("individual prediction (IPRED)")
    ax.set_ylabel("observed (DV)")
    ax.set_title("Observed vs predicted (censored points omitted)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _residuals(result, path: Path) -> Path:
    rows = result.predictions()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = sorted({r["DVID"] for r in rows})
    for c, name in enumerate(names):
        sel = [r for r in rows if r["DVID"] == name and np.isfinite(r["IWRES"])]
        ax.plot([r["TIME"] for r in sel], [r["IWRES"] for r in sel], "o", ms=4, alpha=0.7,
                color=COLOURS[c % len(COLOURS)], label=name)
    ax.axhline(0, color="k", linewidth=1)
    for y in (-1.96, 1.96):
        ax.axhline(y, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("days")
    ax.set_ylabel("IWRES")
    ax.set_title("Individual weighted residuals vs time", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def profile_figure(result, path: Path) -> Path:
    """One panel per subject and profiled parameter: 2Δ(−log L) against the value (log axis when it spans
    decades), the 3.84 threshold, the profile interval (solid) and the Wald interval (dashed)."""
    from ..fitting.profile import CHI2_95
    profiles = result.profiles
    n = len(profiles)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    fits = {f.id: f for f in result.fits}
    for ax, pr in zip(axes.flat, profiles):
        dev = pr.deviance
        ok = np.isfinite(dev) & (dev < 1e6)
        ax.plot(pr.values[ok], dev[ok], "o-", color=COLOURS[0], ms=2.5, linewidth=1.2)
        ax.axhline(CHI2_95, color="grey", linestyle=":", linewidth=1)
        ax.axvline(pr.estimate, color="k", linewidth=0.8)
        for end in (pr.lower, pr.upper):
            if 0 < end < math.inf:
                ax.axvline(end, color=COLOURS[2], linewidth=1.2)
        fit = fits[pr.id]
        k = fit.names.index(pr.parameter)
        for end in (fit.lower[k], fit.upper[k]):
            if 0 < end < math.inf:
                ax.axvline(end, color=COLOURS[4], linestyle="--", linewidth=1)
        finite = pr.values[ok]
        if finite.size and finite.max() > 10 * finite.min():  # log axis for profiles over decades
            ax.set_xscale("log")
        top = max(2 * CHI2_95, float(np.nanmax(dev[ok])) if ok.any() else 0)
        ax.set_ylim(-0.3, min(top, 4 * CHI2_95))
        open_sides = [s for s, flag in (("lower", pr.lower_open), ("upper", pr.upper_open)) if flag]
        ax.set_title(f"ID {pr.id}: {pr.parameter}" + (f" (open {'/'.join(open_sides)})" if open_sides else ""),
                     fontsize=9)
        ax.set_xlabel(pr.parameter, fontsize=8)
        ax.set_ylabel("2Δ(−log L)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{result.model.name}: likelihood profiles; 3.84 line = 95% threshold; profile interval "
                 f"(solid), Wald interval (dashed)", fontsize=9)
    return _save(fig, path)
