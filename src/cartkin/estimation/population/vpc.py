"""Visual predictive checks: replicates of the observed design simulated from the population estimates.

Each replicate gives every subject new random effects η ~ N(0, Ω) (with its own covariates and doses)
drawn from the replicate's own stream (seed, replicate), solves all subjects of a chunk of replicates
(all of them, in one process; a few per task on a Dask cluster) in one call of the compiled batch
solver, adds residual error at the observed times, and censors values below the limit of
quantification. Per observable, times are split into bins holding about the same number of
observations (bin edges between distinct times). In
each bin the observed 5th/50th/95th percentiles are set against the 90% interval (by default) of the
same percentiles over the replicates.

Censored data: a censored value counts at its limit when percentiles are taken (observed and simulated
alike), so a percentile at or below the limit is only known to be there and is flagged (not drawn);
the fraction of observations below the limit per bin is compared with its simulated interval. The
limit of a simulated observation is the observed one's when it was censored, otherwise the median limit
of that observable's censored observations (no censoring if it has none).

Prediction correction (Bergstrand et al. 2011): observed and simulated values (and limits) are multiplied
by PRED_bin / PRED, PRED the population prediction (η = 0) of that observation and PRED_bin the median
PRED of its bin, which removes the spread that comes from covariates and the design.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import CartkinError
from ...execution import InProcess, chunks_for, executor, spread
from .fit_file import LoadedFit, load_fit
from .model import PopulationModel
from .results import PopulationEstimates, PopulationResult

PERCENTILES = (5.0, 50.0, 95.0)


@dataclass(eq=False)
class ObservableCheck:
    """The VPC numbers of one observable (bins in rows; percentiles in the order of PERCENTILES)."""
    name: str
    edges: np.ndarray              # n_bins + 1
    centre: np.ndarray             # median observation time per bin
    count: np.ndarray              # observations per bin
    limit: np.ndarray              # the (median) limit of quantification per bin, NaN if none
    observed: np.ndarray           # n_bins × 3
    simulated: np.ndarray          # n_bins × 3 (percentile) × 3 (interval low, median, high)
    observed_censored: np.ndarray  # fraction below the limit per bin
    simulated_censored: np.ndarray  # n_bins × 3 (interval low, median, high)
    times: np.ndarray              # observed points (for the scatter)
    values: np.ndarray
    censored: np.ndarray

    @property
    def has_censoring(self) -> bool:
        return bool(np.any(self.censored) or np.nanmax(self.simulated_censored[:, 2], initial=0) > 0)


@dataclass(eq=False)
class VpcResult:
    """`vpc(...)` output: `.checks` per observable, `.rows()` (files: `cartkin.report.write`/`plot`)."""
    model_name: str
    checks: tuple[ObservableCheck, ...]
    replicates: int
    prediction_corrected: bool
    interval: float
    seed: int
    failed: int

    def rows(self) -> list[dict]:
        out = []
        for c in self.checks:
            for b in range(c.centre.size):
                row = {"DVID": c.name, "bin": b + 1, "time_from": c.edges[b], "time_to": c.edges[b + 1],
                       "time_median": c.centre[b], "n": int(c.count[b]), "limit": c.limit[b]}
                for p, pct in enumerate(PERCENTILES):
                    tag = f"p{pct:g}"
                    row[f"observed_{tag}"] = c.observed[b, p]
                    row[f"observed_{tag}_below_limit"] = int(_below(c.observed[b, p], c.limit[b]))
                    for s, side in enumerate(("low", "median", "high")):
                        row[f"simulated_{tag}_{side}"] = c.simulated[b, p, s]
                row["observed_censored_fraction"] = c.observed_censored[b]
                for s, side in enumerate(("low", "median", "high")):
                    row[f"simulated_censored_{side}"] = c.simulated_censored[b, s]
                out.append(row)
        return out

def _below(value: float, limit: float) -> bool:
    return bool(math.isfinite(limit) and value <= limit * (1 + 1e-12))


def simulate_design(pm: PopulationModel, estimates: PopulationEstimates, replicates: int, seed: int,
                    first: int = 0, max_redraws: int = 20):
    """Replicates first, ..., first + replicates - 1 of the observed design: (simulated values replicates ×
    observations, the design of one replicate, usable replicate-subject rows). Replicate r draws its
    random effects, then its residual errors, from its own stream (seed, r), so any split of the
    replicates into chunks gives the same numbers. Random effects outside a parameter's bounds are redrawn."""
    n, q = pm.data.n_subjects, pm.n_parameters
    rows = np.tile(np.arange(n), replicates)
    design = pm.design(rows)
    chol = np.linalg.cholesky(estimates.omega)
    mean = pm.mean_phi(estimates.fixed_effects, np.arange(n))
    rngs = [np.random.default_rng([int(seed), first + r]) for r in range(replicates)]
    phi = np.concatenate([mean + rng.standard_normal((n, q)) @ chol.T for rng in rngs]) if replicates \
        else np.empty((0, q))
    for _ in range(max_redraws):
        _, inside = pm.parameter_matrix(phi, rows)
        if inside.all():
            break
        bad = ~inside.reshape(replicates, n)
        for r in np.flatnonzero(bad.any(axis=1)):
            block = phi[r * n:(r + 1) * n]
            block[bad[r]] = mean[bad[r]] + rngs[r].standard_normal((int(bad[r].sum()), q)) @ chol.T
    pred, ok = design.predict(phi)
    sigmas = pm.sigma_per_observation(estimates.sigma, design.slot)
    y = np.empty_like(pred)
    for r, rng in enumerate(rngs):
        obs = slice(design.starts[r * n], design.starts[(r + 1) * n])
        y[obs] = pm.error_model.sample(pred[obs], sigmas[:, obs], rng)
    y[np.repeat(~ok, np.diff(design.starts))] = np.nan
    one = pm.design(np.arange(n))
    return y.reshape(replicates, one.y.size), one, ok.reshape(replicates, n)


def _replicates(shared: tuple, chunk: tuple[int, int], progress=None):
    """Replicates first, ..., first + count - 1 (in this process or on a worker): simulated values, usable rows."""
    pm, estimates, seed = shared
    first, count = chunk
    sim, _, ok = simulate_design(pm, estimates, count, seed, first)
    return sim, ok


def time_bins(times: np.ndarray, n_bins: int | None = None) -> np.ndarray:
    """Bin edges with about equal counts per bin, placed between distinct times."""
    t = np.sort(np.asarray(times, dtype=float))
    uniq, counts = np.unique(t, return_counts=True)
    if n_bins is None:
        n_bins = int(np.clip(t.size // 10, 2, 10))
    n_bins = max(1, min(n_bins, uniq.size))
    target = t.size / n_bins
    edges = [uniq[0]]
    cumulative = 0
    for k in range(uniq.size - 1):
        cumulative += counts[k]
        if cumulative >= target * len(edges) and len(edges) < n_bins:
            edges.append(0.5 * (uniq[k] + uniq[k + 1]))
    edges.append(uniq[-1])
    edges = np.array(edges)
    if edges.size == 2 and edges[0] == edges[1]:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


def vpc(fit, replicates: int = 200, prediction_corrected: bool = False, seed: int = 0,
        n_bins: int | None = None, interval: float = 0.9, client=None, chunk_size: int | None = None) -> VpcResult:
    """Visual predictive check of a population fit (a `PopulationResult`, `LoadedFit` or fit folder).

    client: a `distributed.Client` to simulate chunks of replicates on a Dask cluster (each replicate
    draws from its own stream (seed, replicate), so the check is the same as in one process), or None
    for `cartkin.execution.using`'s client, else this process. chunk_size: replicates per task (default:
    all in this process, about four chunks per worker on a cluster)."""
    if isinstance(fit, (str, Path)):
        fit = load_fit(fit)
    if isinstance(fit, PopulationResult):
        pm, estimates = fit.pm, fit.estimates
    elif isinstance(fit, LoadedFit):
        if fit.pm is None:
            raise CartkinError("the fit was loaded without its data; load_fit(folder, with_data=True)")
        pm, estimates = fit.pm, fit.estimates
    else:
        raise CartkinError(f"vpc needs a population fit (result, loaded fit or folder), got {type(fit).__name__}")
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 20:
        raise CartkinError(f"replicates must be an integer >= 20, got {replicates!r}")
    if not 0.5 <= interval < 1:
        raise CartkinError(f"interval must be between 0.5 and 1, got {interval}")
    if n_bins is not None and (isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1):
        raise CartkinError(f"bins must be an integer >= 1, got {n_bins!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CartkinError(f"seed must be an integer >= 0, got {seed!r}")
    run = executor(client)
    replicates = int(replicates)
    if chunk_size is None:
        chunk_size = replicates if isinstance(run, InProcess) else spread(replicates, run.workers, 1, replicates)
    chunks, sizes = chunks_for(replicates, chunk_size)
    parts = run.map(_replicates, (pm, estimates, int(seed)), chunks, sizes)
    sim = np.concatenate([p[0] for p in parts])
    ok = np.concatenate([p[1] for p in parts])
    design = pm.design(np.arange(pm.data.n_subjects))
    pred, _ = design.predict(pm.mean_phi(estimates.fixed_effects))
    checks = []
    for j, name in enumerate(pm.observables):
        sel = np.flatnonzero(design.slot == j)
        if sel.size == 0:
            continue
        checks.append(_check(name, design, sel, sim[:, sel], pred[sel], prediction_corrected, n_bins, interval))
    return VpcResult(pm.model.name, tuple(checks), int(replicates), bool(prediction_corrected), float(interval),
                     int(seed), int((~ok).sum()))


def _check(name, design, sel, sim, pred, corrected, n_bins, interval) -> ObservableCheck:
    t = design.times[sel]
    y = design.y[sel]
    cens = design.censored[sel]
    lim = design.limit[sel]
    typical_limit = float(np.median(lim[cens])) if np.any(cens) else math.nan
    limit = np.where(cens, lim, typical_limit)           # per observation; NaN: never censored
    observed = np.where(cens, lim, y)
    sim_cens = np.isfinite(limit)[None, :] & (sim < limit[None, :])
    simulated = np.where(sim_cens, limit[None, :], sim)
    edges = time_bins(t, n_bins)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, edges.size - 2)
    n_b = edges.size - 1
    factor = np.ones(t.size)
    if corrected:
        for b in range(n_b):
            in_b = which == b
            good = in_b & (pred > 0) & np.isfinite(pred)
            if np.any(good):
                factor[good] = np.median(pred[good]) / pred[good]
    observed = observed * factor
    simulated = simulated * factor[None, :]
    limit_c = limit * factor
    lo_q, hi_q = (1 - interval) / 2 * 100, (1 + interval) / 2 * 100
    centre = np.empty(n_b)
    count = np.zeros(n_b, dtype=np.int64)
    bin_limit = np.full(n_b, np.nan)
    obs_p = np.full((n_b, 3), np.nan)
    sim_p = np.full((n_b, 3, 3), np.nan)
    obs_c = np.full(n_b, np.nan)
    sim_c = np.full((n_b, 3), np.nan)
    for b in range(n_b):
        in_b = which == b
        count[b] = int(in_b.sum())
        if not count[b]:
            centre[b] = 0.5 * (edges[b] + edges[b + 1])
            continue
        centre[b] = float(np.median(t[in_b]))
        if np.any(np.isfinite(limit_c[in_b])):
            bin_limit[b] = float(np.nanmedian(limit_c[in_b]))
        obs_p[b] = np.percentile(observed[in_b], PERCENTILES)
        per_rep = np.nanpercentile(simulated[:, in_b], PERCENTILES, axis=1).T     # replicates × 3
        sim_p[b] = np.nanpercentile(per_rep, (lo_q, 50, hi_q), axis=0).T
        obs_c[b] = float(np.mean(cens[in_b]))
        sim_c[b] = np.percentile(np.mean(sim_cens[:, in_b], axis=1), (lo_q, 50, hi_q))
    return ObservableCheck(name, edges, centre, count, bin_limit, obs_p, sim_p, obs_c, sim_c, t, observed, cens)
