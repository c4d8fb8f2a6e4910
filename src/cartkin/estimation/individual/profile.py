"""Profile-likelihood intervals for individual fits.

For one subject and one free parameter θ: fix φ = log θ at a value, re-optimise every other free
parameter and the subject's residual SDs (the pooled SDs of a ``pooled_sigma`` fit stay at their pooled
values), and record the minimum −log L. Walking away from the estimate on each side with steps that grow
while the profile is flat (each point warm started from its neighbour) brackets the value where
2 Δ(−log L) = 3.841 (the 95% point of χ²₁); `scipy.optimize.brentq` then finds the crossing. A side that
reaches the search bound (1000-fold from the model default, or the parameter's own bound) without
crossing is open: the interval is reported as unbounded there (lower 0, upper inf), a practical
non-identifiability the Wald interval, being symmetric on the log scale by construction, cannot show.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import brentq, minimize

from ...errors import CartkinError
from ...execution import executor
from ...model.definition import unknown_name_message
from ...data.dataset import Subject
from ..blas import single_blas_thread
from .objective import FAILED, objective_factory, search_bounds

CHI2_95 = 3.841458820694124  # 95% quantile of chi-square with 1 degree of freedom
MAX_POINTS = 40              # profile points per side, at most
INNER_OPTIONS = {"maxiter": 500, "ftol": 1e-13, "gtol": 1e-8}


@dataclass(frozen=True, eq=False)
class Profile:
    """One subject's profile of one parameter: points (natural scale, sorted) and the 95% interval.

    lower is 0 and upper is inf where the profile stays below the threshold up to the search bound."""
    id: str
    parameter: str
    values: np.ndarray
    objectives: np.ndarray
    estimate: float
    minimum: float                  # the fit's −log L (the reference for 2Δ)
    lower: float
    upper: float
    warnings: tuple[str, ...] = field(default=())

    @property
    def lower_open(self) -> bool:
        return self.lower == 0.0

    @property
    def upper_open(self) -> bool:
        return math.isinf(self.upper)

    @property
    def deviance(self) -> np.ndarray:
        """2 Δ(−log L) at the profile points."""
        return 2.0 * (self.objectives - self.minimum)


def check_profile_names(names: Sequence[str], free: Sequence[str], model) -> tuple[str, ...]:
    """The names to profile, each a free parameter of the fit; otherwise a one-line CartkinError.
    A string is read as comma-separated names."""
    if isinstance(names, str):
        names = names.split(",")
    names = tuple(str(n).strip() for n in names if str(n).strip())
    for name in names:
        if name not in model.parameter_names:
            raise CartkinError("--profile: " + unknown_name_message("parameter", name, model.parameter_names,
                                                                    model.name))
        if name not in free:
            raise CartkinError(f"--profile {name}: not a free parameter of this fit (free: {', '.join(free)})")
    if len(set(names)) != len(names):
        raise CartkinError(f"--profile names a parameter twice: {', '.join(names)}")
    return names


def profile_fits(result, names: Sequence[str], threshold: float = CHI2_95, client=None) -> tuple[Profile, ...]:
    """Profiles of `names` for every subject of a `FitResult` with finite estimates.

    client: a `distributed.Client` to compute the profiles on a Dask cluster, one (subject, parameter)
    profile per task (a profile's points are walked one from the other, each warm started from its
    neighbour, so a profile is the unit of work); None for `cartkin.execution.using`'s client, else this
    process. The profiles are the same either way."""
    names = check_profile_names(names, result.free, result.model)
    pooled = {n: v for n, v, _ in result.pooled_sigma}
    tasks = [(i, name) for i, fit in enumerate(result.fits) if np.all(np.isfinite(fit.estimates))
             for name in names]
    shared = (result.problem, result.data.subjects, result.fits, pooled or None, float(threshold))
    return tuple(executor(client).map(_profile_one, shared, tasks, [1] * len(tasks)))


def _profile_one(shared: tuple, task: tuple[int, str], progress=None) -> Profile:
    """Subject i's profile of one parameter (in this process or on a worker)."""
    problem, subjects, fits, pooled, threshold = shared
    i, name = task
    with single_blas_thread():
        return profile_subject(problem, subjects[i], fits[i], name, pooled, threshold)


def profile_subject(problem, subject: Subject, fit, name: str, sigma_fixed: Mapping[str, float] | None = None,
                    threshold: float = CHI2_95) -> Profile:
    """Profile −log L of one subject's fit in parameter `name` (see the module docstring)."""
    objective, _, est_sigma = objective_factory(problem, subject, sigma_fixed)
    x_hat = np.log(np.asarray(fit.estimates, dtype=float))
    if x_hat.size != len(problem.free) + len(est_sigma):
        raise CartkinError(f"subject {fit.id}: the fit's estimates do not match the residual SDs to profile over")
    j = problem.free.index(name)
    bounds = search_bounds(problem, len(est_sigma))
    others = [k for k in range(x_hat.size) if k != j]
    other_bounds = [bounds[k] for k in others]
    f_hat = float(fit.objective)
    points: dict[float, tuple[float, np.ndarray]] = {}  # φ -> (profile −log L, optimal other coordinates)

    def at(phi: float, start: np.ndarray) -> float:
        """Minimum of −log L over the other coordinates with φ_j = phi (warm started at `start`; from the
        estimate's coordinates too if that fails). Every point is kept in `points`."""
        if phi in points:
            return points[phi][0]
        if not others:
            points[phi] = (float(objective(np.array([phi]))[0]), np.empty(0))
            return points[phi][0]

        def inner(z):
            v, g = objective(np.insert(z, j, phi))
            return v, np.delete(g, j)
        lo, hi = np.array(other_bounds).T
        best = None
        for z0 in (start, x_hat[others]):
            res = minimize(inner, np.clip(z0, lo, hi), jac=True, method="L-BFGS-B", bounds=other_bounds,
                           options=INNER_OPTIONS)
            if best is None or res.fun < best.fun:
                best = res
            if best.fun < FAILED:
                break
        points[phi] = (float(best.fun), np.asarray(best.x, dtype=float))
        return points[phi][0]

    def nearest(phi: float) -> np.ndarray:
        key = min(points, key=lambda p: abs(p - phi))
        return points[key][1]

    phi_hat = float(x_hat[j])
    at(phi_hat, x_hat[others])
    se = fit.standard_errors[j] / fit.estimates[j] if fit.estimates[j] > 0 else math.nan
    # first step 0.3 SE on the log scale: the crossing is ~2 SE away for a well-identified parameter
    step0 = float(np.clip(0.3 * se, 1e-3, 0.5)) if math.isfinite(se) and se > 0 else 0.3
    warnings = []
    ends = []
    for direction, limit in ((-1, bounds[j][0]), (+1, bounds[j][1])):
        crossing = _walk(at, nearest, phi_hat, direction, limit, step0, f_hat, threshold)
        if crossing is None:
            ends.append(None)
            side = "below" if direction < 0 else "above"
            warnings.append(f"{name} profile interval open {side} (no crossing within the search bound "
                            f"{math.exp(limit):.3g}): practically not identifiable")
        else:
            ends.append(math.exp(crossing))
    best_seen = min(v for v, _ in points.values())
    if best_seen < f_hat - 1e-3:
        warnings.append(f"{name} profile found −log L {best_seen:.4g} below the fit's {f_hat:.4g}: the fit stopped "
                        f"at a local optimum")
    phis = np.array(sorted(points))
    return Profile(fit.id, name, np.exp(phis), np.array([points[p][0] for p in phis]), float(fit.estimates[j]),
                   f_hat, 0.0 if ends[0] is None else ends[0], math.inf if ends[1] is None else ends[1],
                   tuple(warnings))


def _walk(at, nearest, phi_hat, direction, limit, step, f_hat, threshold):
    """φ where 2Δ(−log L) crosses `threshold` on one side of the estimate, or None if it does not before
    `limit`. Steps grow 1.6× while 2Δ rises by less than 1 per step and shrink when it jumps by more than 3."""
    def excess(phi):
        return 2.0 * (at(phi, nearest(phi)) - f_hat) - threshold

    previous, g_previous = phi_hat, -threshold
    if direction * (limit - phi_hat) <= 1e-9:  # the estimate is at this bound
        return None
    for _ in range(MAX_POINTS):
        phi = previous + direction * step
        if direction * (phi - limit) >= 0:
            phi = limit
        g = excess(phi)
        if g >= 0:
            lo, hi = sorted((previous, phi))
            return brentq(excess, lo, hi, xtol=1e-4, rtol=1e-8)
        if phi == limit:
            return None
        rise = g - g_previous
        if rise < 1.0:
            step *= 1.6
        elif rise > 3.0:
            step *= 0.5
        previous, g_previous = phi, g
    return None
