"""Diagnostic figures for individual fits: fits per subject, observed vs predicted, residuals vs time."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ..estimation.individual.profile import CHI2_95  # noqa: E402
from .plots import COLOURS, DPI, _save, _unit  # noqa: E402

# one fixed colour per model observable (by its position in the model), the same in every figure:
# the first (CAR T cells in the built-in models) blue, the second (leukaemia) red, ...
OBS_COLOURS = ["#1f63b0", "#d6402b", "#2a9d3a", "#7b4fb0", "#e08a00", "#666666"]


def obs_colour(model, name: str) -> str:
    return OBS_COLOURS[model.observables.index(name) % len(OBS_COLOURS)]


def obs_label(model, name: str) -> str:
    unit = _unit(model, name)
    return f"{name} ({unit})" if unit and unit != "-" else name


def panel_grid(n: int, xlabel: str = "days", width: float = 3.3, height: float = 2.6):
    """A constrained-layout grid of n panels of a fixed size (so fonts stay legible for many subjects),
    the x label on the lowest panel of each column."""
    cols = min(n, max(2, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(width * cols, 7.0), height * rows + 1.0), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.set_visible(i < n)
        if i + cols >= n:
            ax.set_xlabel(xlabel, fontsize=10)
    return fig, axes


def log_ylim(ax, data, curves, below: float = 10.0, above: float = 1e3) -> None:
    """Log y limits holding the data and the curves; curves count only down to `below` times under the
    lowest datum and up to `above` times over the highest."""
    data = np.asarray(data, dtype=float)
    data = data[np.isfinite(data) & (data > 0)]
    if not data.size:
        return
    lo, hi = data.min(), data.max()
    c = np.asarray(curves, dtype=float)
    c = c[np.isfinite(c) & (c > 0)]
    if c.size:
        lo, hi = max(min(lo, c.min()), lo / below), min(max(hi, c.max()), hi * above)
    ax.set_ylim(lo / 2.5, hi * 2.5)


def figure_legend(fig, model, names, extra, cols: int) -> None:
    """One legend below the panels: a colour per observable (with units), then the marker/line key."""
    handles = [Line2D([], [], color=obs_colour(model, o), marker="o", linewidth=2, label=obs_label(model, o))
               for o in names] + extra
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 2 * cols), fontsize=10,
               frameon=False)


KEY = [Line2D([], [], color="0.35", marker="o", linestyle="none", label="observed"),
       Line2D([], [], color="0.35", marker="v", mfc="none", linestyle="none", label="censored (at the limit)")]


def _style(ax, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=9)


def _save_constrained(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def fit_figures(result, outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    return [_individual(result, outdir / "individual_fits.png"),
            _observed_vs_predicted(result, outdir / "observed_vs_predicted.png"),
            _residuals(result, outdir / "residuals_vs_time.png")]


def _individual(result, path: Path) -> Path:
    problem, model = result.problem, result.model
    subjects = result.data.subjects
    fig, axes = panel_grid(len(subjects))
    used = [model.observables.index(o) for o in problem.observables]
    for ax, fit, subject in zip(axes.flat, result.fits, subjects):
        t_end = max(subject.times.max() * 1.05, 1.0)
        grid = np.linspace(0, t_end, 200)[1:]
        data, curves = [], []
        for k in used:
            colour = obs_colour(model, model.observables[k])
            sel = subject.observable_index == k
            obs_sel = sel & ~subject.censored
            cens_sel = sel & subject.censored
            ax.plot(subject.times[obs_sel], subject.values[obs_sel], "o", color=colour, ms=4)
            ax.plot(subject.times[cens_sel], subject.limits[cens_sel], "v", mfc="none", color=colour, ms=5)
            data += [subject.values[obs_sel], subject.limits[cens_sel]]
            if not np.all(np.isfinite(fit.estimates)):
                continue
            pred, grad = problem.predict(subject, fit.parameters, grid, np.full(grid.size, k))
            if pred is None:
                continue
            ax.plot(grid, pred, color=colour, linewidth=1.5)
            curves.append(pred)
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
        log_ylim(ax, np.concatenate(data), np.concatenate(curves) if curves else [])
        ax.set_xlim(0, t_end)
        _style(ax, f"ID {subject.id}" + ("" if fit.converged else " (not converged)"))
    key = KEY + [Line2D([], [], color="0.35", linewidth=1.5, label="individual fit"),
                 Patch(color="0.35", alpha=0.2, linewidth=0, label="95% band")]
    figure_legend(fig, model, problem.observables, key, axes.shape[1])
    fig.supylabel(", ".join(obs_label(model, o) for o in problem.observables), fontsize=11)
    fig.suptitle(f"{model.name}: individual fits", fontsize=12)
    return _save_constrained(fig, path)


def _rows_by_observable(result, keep):
    """(observable, its prediction rows passing `keep`) in model order, for the observables with data."""
    rows = result.predictions()
    names = [o for o in result.model.observables if any(r["DVID"] == o for r in rows)]
    return [(o, [r for r in rows if r["DVID"] == o and keep(r)]) for o in names]


def _observed_vs_predicted(result, path: Path) -> Path:
    model = result.model
    groups = _rows_by_observable(result, lambda r: not r["CENS"] and r["IPRED"] > 0 and r["DV"] > 0)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 4.6), squeeze=False,
                             layout="constrained")
    for ax, (name, sel) in zip(axes.flat, groups):
        label = obs_label(model, name)
        _style(ax, label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"individual prediction IPRED ({_unit(model, name)})", fontsize=10)
        ax.set_ylabel(f"observed DV ({_unit(model, name)})", fontsize=10)
        if not sel:
            continue
        obs = np.array([r["DV"] for r in sel])
        pred = np.array([r["IPRED"] for r in sel])
        ax.plot(pred, obs, "o", ms=4, alpha=0.7, color=obs_colour(model, name))
        lo, hi = min(obs.min(), pred.min()) / 2, max(obs.max(), pred.max()) * 2
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    fig.suptitle(f"{model.name}: observed vs individual prediction (censored points omitted)", fontsize=11)
    return _save_constrained(fig, path)


def _residuals(result, path: Path) -> Path:
    model = result.model
    groups = _rows_by_observable(result, lambda r: np.isfinite(r["IWRES"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, (name, sel) in zip(axes.flat, groups):
        ax.plot([r["TIME"] for r in sel], [r["IWRES"] for r in sel], "o", ms=4, alpha=0.7,
                color=obs_colour(model, name))
        ax.axhline(0, color="k", linewidth=1)
        for y in (-1.96, 1.96):
            ax.axhline(y, color="grey", linestyle=":", linewidth=1)
        _style(ax, name)
        ax.set_xlabel("days", fontsize=10)
    axes[0, 0].set_ylabel("IWRES", fontsize=10)
    fig.suptitle(f"{model.name}: individual weighted residuals vs time (dotted: ±1.96)", fontsize=11)
    return _save_constrained(fig, path)


def profile_figure(result, path: Path) -> Path:
    """One panel per subject and profiled parameter: 2Δ(−log L) against the value (log axis when it spans
    decades), the 3.84 threshold, the profile interval (solid) and the Wald interval (dashed)."""
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
