"""Target statistics as weighted means and quantiles of per-patient outcomes, and their likelihoods.

Every statistic is computed from the per-patient columns that `cartkin.compare` produces
(scenario/outcomes.py) with one weight per patient: importance weights during the calibration, equal
weights for a plain simulation. A target's log-likelihood compares the observed figure with the simulated
one, the Monte-Carlo error of the simulation (from the effective sample size) included.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from .spec import Target

MEDIAN_SE = math.sqrt(math.pi / 2)  # SE of a median = sqrt(pi/2) SD / sqrt(n) (normal data)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Simulated:
    """A simulated statistic: value (% or the column's unit), log_sd (between-patient SD of the log, for
    gmean and median), ess (effective number of patients behind it), se (Monte-Carlo SE: of the proportion
    for pct, of the log for the others)."""
    value: float
    log_sd: float
    ess: float
    se: float


def _pool(target: Target, arm_names, data, weights):
    """(values, weights) of the target's patients pooled over its arms (each arm the same total weight)."""
    values, w = [], []
    for arm in target.arms:
        k = arm_names.index(arm)
        columns = data[k]
        v = columns[target.column]
        mask = np.isfinite(v)
        if target.group:
            response = columns["response"]
            mask &= (response > 0.5) if target.group == "responders" else (response <= 0.5)
        if target.kind != "pct":
            mask &= v > 0
        wk = weights[k]
        values.append(v[mask])
        w.append(wk[mask] / (wk.sum() * len(target.arms)))
    return np.concatenate(values), np.concatenate(w)


def simulated(target: Target, arm_names, data, weights) -> Simulated:
    v, w = _pool(target, arm_names, data, weights)
    total = w.sum()
    if v.size == 0 or total <= 0:
        return Simulated(math.nan, math.nan, 0.0, math.nan)
    w = w / total
    ess = 1.0 / float(np.sum(w * w))
    if target.kind == "pct":
        p = float(np.sum(w * (v > 0.5)))
        return Simulated(100.0 * p, math.nan, ess, math.sqrt(max(p * (1 - p), 0.25 / ess) / ess))
    x = np.log(v)
    mean = float(np.sum(w * x))
    sd = math.sqrt(max(float(np.sum(w * (x - mean) ** 2)), 1e-12))
    if target.kind == "gmean":
        return Simulated(math.exp(mean), sd, ess, sd / math.sqrt(ess))
    return Simulated(math.exp(smooth_median(x, w, sd, ess)), sd, ess, MEDIAN_SE * sd / math.sqrt(ess))


def smooth_median(x: np.ndarray, w: np.ndarray, sd: float, ess: float) -> float:
    """The median of a kernel-smoothed weighted distribution (smooth in the weights, unlike the sample
    median): bandwidth 0.9 sd ess^(-1/5) (Silverman), solved by bisection."""
    h = max(0.9 * sd * ess ** -0.2, 1e-9)
    lo, hi = float(x.min()) - 4 * h, float(x.max()) + 4 * h
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(np.sum(w * special.ndtr((mid - x) / h))) < 0.5:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def observed_log_sd(target: Target, sim: Simulated) -> float:
    """Between-patient SD of the log of the observed figure: from its CV%, else the simulated spread."""
    if target.cv is not None:
        return math.sqrt(math.log1p((target.cv / 100.0) ** 2))
    return sim.log_sd


def log_likelihood(target: Target, sim: Simulated) -> float:
    """Binomial for percentages (count of n; a % with n gives count = % n / 100), normal on the log scale
    for geometric means and medians (observed SE from the spread and n, plus the Monte-Carlo SE)."""
    if not math.isfinite(sim.value) or sim.ess <= 0:
        return -1e6
    if target.kind == "pct":
        floor = 0.5 / max(sim.ess, 1.0)
        p = min(max(sim.value / 100.0, floor), 1.0 - floor)
        x = target.value / 100.0 * target.n
        return x * math.log(p) + (target.n - x) * math.log1p(-p)
    sd = observed_log_sd(target, sim)
    factor = MEDIAN_SE if target.kind == "median" else 1.0
    var = (factor * sd) ** 2 / target.n + sim.se ** 2
    z = math.log(target.value) - math.log(sim.value)
    return -0.5 * z * z / var - 0.5 * math.log(var)


def observed_interval(target: Target, sim: Simulated) -> tuple[float, float]:
    """95% interval of the observed figure: Clopper–Pearson for percentages, log-normal otherwise."""
    if target.kind == "pct":
        n = target.n
        x = round(target.value / 100.0 * n)
        lo = 0.0 if x <= 0 else float(stats.beta.ppf(0.025, x, n - x + 1))
        hi = 1.0 if x >= n else float(stats.beta.ppf(0.975, x + 1, n - x))
        return 100.0 * lo, 100.0 * hi
    sd = observed_log_sd(target, sim)
    factor = MEDIAN_SE if target.kind == "median" else 1.0
    half = Z95 * factor * sd / math.sqrt(target.n) if math.isfinite(sd) else math.nan
    return target.value * math.exp(-half), target.value * math.exp(half)


def simulated_interval(target: Target, sim: Simulated) -> tuple[float, float]:
    """Monte-Carlo 95% interval of a simulated statistic."""
    if target.kind == "pct":
        return max(0.0, sim.value - 100 * Z95 * sim.se), min(100.0, sim.value + 100 * Z95 * sim.se)
    return sim.value * math.exp(-Z95 * sim.se), sim.value * math.exp(Z95 * sim.se)


def agreement(target: Target, sim: Simulated) -> tuple[float, float]:
    """(z-score, two-sided posterior-predictive p). pct: z on the proportion scale, p from the binomial of
    the trial's n at the simulated rate; others: z on the log scale, p from it."""
    if not math.isfinite(sim.value):
        return math.nan, math.nan
    if target.kind == "pct":
        p = sim.value / 100.0
        n = target.n
        x = round(target.value / 100.0 * n)
        var = p * (1 - p) / n + sim.se ** 2
        z = (target.value / 100.0 - p) / math.sqrt(var) if var > 0 else math.nan
        nn = round(n)
        pp = min(1.0, 2 * min(float(stats.binom.cdf(x, nn, p)), float(stats.binom.sf(x - 1, nn, p))))
        return z, pp
    sd = observed_log_sd(target, sim)
    factor = MEDIAN_SE if target.kind == "median" else 1.0
    var = (factor * sd) ** 2 / target.n + sim.se ** 2
    z = (math.log(target.value) - math.log(sim.value)) / math.sqrt(var)
    return z, float(2 * stats.norm.sf(abs(z)))


def binomial_probability(target: Target, sim: Simulated) -> float:
    """Probability that a trial of the target's n patients gives exactly its observed count at the simulated
    rate (e.g. P(12 of 12))."""
    if not math.isfinite(sim.value):
        return math.nan
    return float(stats.binom.pmf(round(target.value / 100.0 * target.n), round(target.n), sim.value / 100.0))
