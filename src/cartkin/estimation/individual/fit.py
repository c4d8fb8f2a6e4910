"""Individual maximum-likelihood fits with censored observations and analytic gradients.

For each subject: parameters are estimated on the log scale within their bounds (L-BFGS-B, seeded
multi-start); the objective is −log L with the M3 term for censored points; its gradient comes from the
forward sensitivity model (cartkin.estimation.individual.sensitivities) solved in compiled code. Standard errors come
from the observed Fisher information (the Hessian of −log L, by central differences of the analytic
gradient), on the log scale; intervals are exp(φ ± 1.96 SE). Residual standard deviations (one per
observable and error component) are estimated with the parameters unless fixed: per subject, or with
``pooled_sigma=True`` shared by all subjects (`_fit_pooled`). Profile-likelihood intervals on request
(cartkin.estimation.individual.profile).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

from ...dosing import Regimen
from ...errors import CartkinError
from ...execution import executor
from ...model.definition import Model
from ...model.registry import load_model
from ...progress import as_callback
from ...simulation.run import as_solver
from ...solve.solver import Solver
from ...data.dataset import Dataset, Subject
from ...stats.error_models import ErrorModel, error_model
from ...stats.priors import as_priors
from ..population.fit_file import LoadedFit, priors_from_fit
from ..blas import single_blas_thread
from .objective import FAILED, Problem, objective_factory, search_bounds
from .profile import check_profile_names, profile_fits
from .results import FitResult, SubjectFit

Z95 = 1.959963984540054
SCREEN = 50        # points screened over the search box for the multi-start (see _screened_starts)
#: the default solver of individual fits: tight, so that Hessians by differences of the gradient are smooth
FIT_SOLVER = Solver("auto", 1e-8, 1e-10)
STATIONARY = 1e-4  # |projected gradient| of −log L per unit log parameter that counts as an optimum


def fit(model: Model | str, data: Dataset, estimate: Sequence[str] | None = None,
        fix: Mapping[str, float] | None = None, error: str | ErrorModel = "proportional",
        sigma: Mapping[str, float] | None = None, regimen: Regimen | None = None, starts: int = 4,
        seed: int = 0, solver: Solver | None = None, *, rtol: float | None = None, atol: float | None = None,
        progress=None, pooled_sigma: bool = False, profile: Sequence[str] = (), priors=None,
        client=None) -> FitResult:
    """Fit each subject of `data` by maximum likelihood. See the module docstring.

    pooled_sigma: one residual SD per observable shared by all subjects (estimated jointly with every
    subject's parameters) instead of one per subject; needed when subjects have few observations.
    profile: free parameters to give profile-likelihood intervals (cartkin.estimation.individual.profile).
    priors: log-normal priors on estimated parameters, {name: (median, SD of the log)}, or a population fit
    (folder or LoadedFit) whose typical values and sqrt(ω²) give them: the fit is then maximum a posteriori
    (objective −log posterior, SEs from its Hessian; cartkin.stats.priors).
    solver: the `cartkin.Solver` of every prediction (default FIT_SOLVER: auto, rtol 1e-8, atol 1e-10, tight
    enough for finite-difference Hessians); rtol/atol are shorthands.
    client: a `distributed.Client` to fit the subjects (each a task with its multi-start) and compute the
    profiles (each (subject, parameter) profile a task) on a Dask cluster; the fits are the same as in
    one process. A pooled_sigma fit, whose subjects are refitted together at every step, runs here."""
    model = load_model(model)
    error = error_model(error)
    fix = dict(fix or {})
    for name, value in fix.items():
        info = model.parameter(name) if name in model.parameter_names else model.parameter_index(name)
        if not (math.isfinite(value) and info.lower <= value <= info.upper):
            raise CartkinError(f"--fix {name}={value}: outside the bounds of {name} [{info.lower}, {info.upper}]")
    free = model.estimated(estimate, fix)
    if not free:
        raise CartkinError(f"nothing to estimate: name parameters with --estimate (model {model.name} has no default)")
    for name in free:
        model.parameter_index(name)
        if name in fix:
            raise CartkinError(f"{name} is both estimated and fixed")
        covs = {c for s in data.subjects for c in s.covariates}
        if name in covs:
            raise CartkinError(f"{name} is a covariate in the data; it cannot also be estimated")
    if starts < 1:
        raise CartkinError(f"starts must be >= 1, got {starts}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CartkinError(f"seed must be an integer >= 0, got {seed!r}")
    profile = check_profile_names(profile or (), free, model)
    sigma = {k: float(v) for k, v in (sigma or {}).items()}
    for k, v in sigma.items():
        if not (math.isfinite(v) and v > 0):
            raise CartkinError(f"residual parameter {k} must be > 0, got {v}")
    if isinstance(priors, (str, Path, LoadedFit)):
        priors = priors_from_fit(priors, free)
    priors = as_priors(priors, model, free)
    problem = Problem(model, free, fix, error, sigma, regimen, as_solver(solver, rtol, atol, default=FIT_SOLVER),
                       data.observables_used, priors)
    if fix:
        # fixed values the model cannot be solved with fail every start: say so before fitting
        given = ", ".join(f"{k}={v:g}" for k, v in fix.items())
        for subject in data.subjects:
            if problem.predict(subject, problem.base_parameters(subject))[0] is None:
                raise CartkinError(f"the model cannot be solved for subject {subject.id} with --fix {given} "
                                   f"(at the default values of the other parameters); check the fixed values")
    callback = as_callback(progress, len(data.subjects), f"fitting {len(data.subjects)} subjects")
    fits, pooled = [], ()
    with single_blas_thread():
        if pooled_sigma and len(problem.sigma_fixed) < len(problem.sigma_names):
            fits, pooled = _fit_pooled(problem, data.subjects, starts, seed, callback)
        else:
            n = len(data.subjects)
            fits = executor(client).map(_fit_one, (problem, data.subjects, starts, seed), range(n),
                                        [1] * n, callback)
        result = FitResult(model, data, free, problem.error, tuple(fits), problem, pooled, priors=priors)
        if profile:
            result = dataclasses.replace(result, profiles=profile_fits(result, profile, client=client))
    return result


def _fit_one(shared, i: int, progress=None) -> SubjectFit:
    """Subject i's multi-start fit (in this process or on a worker)."""
    problem, subjects, starts, seed = shared
    with single_blas_thread():
        return _fit_subject(problem, subjects[i], starts, np.random.default_rng([seed, i]))


def _fit_pooled(problem: Problem, subjects: Sequence[Subject], starts: int, seed: int, callback):
    """Individual parameters with residual SDs shared by all subjects.

    The σ's are optimised on the profile F(σ) = Σ_i min_θi −log L_i(θi, σ): every evaluation refits each
    subject at those σ's, warm started from the fits at the best σ's so far (so a trial step of the line
    search cannot drag the fits into a worse basin), and F's gradient is Σ_i ∂(−log L_i)/∂σ at the
    refitted θi (envelope theorem). L-BFGS-B then converges in a few tens of evaluations where alternating
    between the blocks crawls. Subjects are multi-started at the initial σ's and again at the optimum
    (the profile is re-optimised if that found better fits). SEs of the σ's come from F's curvature.

    Returns (fits at the final σ's, ((name, σ, SE of log σ), ...))."""
    names = [n for n in problem.sigma_names if n not in problem.sigma_fixed]
    q = len(problem.free)
    thetas: list[np.ndarray | None] = [None] * len(subjects)   # fits at the best σ's so far
    best_total = [math.inf]

    def sigmas(z):
        return {**problem.sigma_fixed, **dict(zip(names, np.exp(z)))}

    def refit(z, multi):
        """Refit every subject at σ = exp(z); returns the total and its gradient in z."""
        fixed = sigmas(z)
        value, grad = 0.0, np.zeros(len(names))
        new = list(thetas)
        for i, subject in enumerate(subjects):
            results = []
            if thetas[i] is not None:
                results.append(_optimise_subject(problem, subject, 1, None, fixed, thetas[i]))
            if multi or thetas[i] is None:
                results.append(_optimise_subject(problem, subject, starts, np.random.default_rng([seed, i]), fixed))
            results = [r for r in results if r is not None and r.fun < FAILED]
            if not results:
                continue
            new[i] = min(results, key=lambda r: r.fun).x[:q]
            objective = objective_factory(problem, subject, problem.sigma_fixed)[0]
            v, g = objective(np.concatenate([new[i], z]))
            value += v
            grad += g[q:]
        if value <= best_total[0] or multi:
            best_total[0] = value
            thetas[:] = new
        return value, grad

    bounds = [(math.log(1e-4), math.log(1e2))] * len(names)
    z = np.zeros(len(names))
    g0 = refit(z, multi=True)[1]
    scale = 1.0 / max(1.0, float(np.max(np.abs(g0))))  # first trial step at most a factor e in each σ

    def scaled(z):
        value, grad = refit(z, False)
        return value * scale, grad * scale
    for polish in range(3):
        res = minimize(scaled, z, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"ftol": 1e-13, "gtol": 1e-8})
        before = refit(res.x, multi=False)[0]
        after = refit(res.x, multi=True)[0]
        z = res.x
        if after > before - 1e-6:  # multi-starting at the optimum found nothing better
            break
    H = _hessian(lambda z: refit(z, False), z)
    with np.errstate(invalid="ignore"):
        se_log = np.sqrt(np.diag(np.linalg.inv(H))) if np.all(np.linalg.eigvalsh(H) > 0) else \
            np.full(len(names), np.nan)
    refit(z, multi=False)
    fixed = sigmas(z)
    fits = []
    for i, subject in enumerate(subjects):
        best = None
        if thetas[i] is not None:
            best = _optimise_subject(problem, subject, 1, None, fixed, thetas[i])
        fits.append(_summarise(problem, subject, best, fixed))
        if callback:
            callback(i + 1)
    if not res.success:
        fits = [_with_warning(f, f"pooled residual SDs not converged: {res.message}") for f in fits]
    return fits, tuple((n, fixed[n], se_log[k]) for k, n in enumerate(names))


def _with_warning(fit: SubjectFit, warning: str) -> SubjectFit:
    return dataclasses.replace(fit, converged=False, warnings=fit.warnings + (warning,))


def _fit_subject(problem: Problem, subject: Subject, starts: int, rng,
                 sigma_fixed: Mapping[str, float] | None = None, x_start: np.ndarray | None = None) -> SubjectFit:
    """Multi-start fit of one subject with its uncertainty (see `_optimise_subject`)."""
    best = _optimise_subject(problem, subject, starts, rng, sigma_fixed, x_start)
    return _summarise(problem, subject, best, sigma_fixed)


def _optimise_subject(problem: Problem, subject: Subject, starts: int, rng,
                      sigma_fixed: Mapping[str, float] | None = None, x_start: np.ndarray | None = None):
    """The best L-BFGS-B result over `starts` starts (None if no start could be solved): the model defaults
    (or `x_start`, log free parameters, for a warm start) and `starts - 1` from `_screened_starts`."""
    objective, unpack, est_sigma = objective_factory(problem, subject, sigma_fixed)
    q = len(problem.free)
    base = problem.base_parameters(subject)
    if x_start is None:  # the model defaults, or a prior's median where there is one (MAP)
        theta0 = np.log([problem.priors[name].median if name in problem.priors else base[i]
                         for name, i in zip(problem.free, problem.free_index)])
    else:
        theta0 = np.asarray(x_start, dtype=float)
    x0 = np.concatenate([theta0, np.full(len(est_sigma), math.log(1.0))])
    bounds = search_bounds(problem, len(est_sigma))
    best = None
    raw_objective = objective
    lo, hi = np.array(bounds).T
    first = np.clip(x0, lo, hi)
    for x in [first] + _screened_starts(raw_objective, first, lo[:q], hi[:q], starts - 1, rng):
        f0, g0 = raw_objective(x)
        if f0 >= FAILED:
            continue
        scale = 1.0 / max(1.0, float(np.max(np.abs(g0))))
        try:
            res = _minimise_from(raw_objective, x, scale, q, len(x) - q, bounds)
        except (FloatingPointError, ValueError):  # a start that cannot be evaluated
            continue
        res.fun = raw_objective(res.x)[0]
        if best is None or res.fun < best.fun:
            best = res
    return best


def _minimise_from(raw_objective, x, scale, q, n_sig, bounds):
    """L-BFGS-B from x: stage 1 the structural parameters with the residual SDs held at their start values
    (a large initial misfit otherwise inflates the SDs and flattens the surface); stage 2 everything.

    The objective is scaled so that the first gradient is O(1) (L-BFGS-B's first step is the raw negative
    gradient, which would otherwise jump to the bounds). Where a first step of O(1) on the log scale
    already falls off a cliff (a leukaemia killed far below its data: −log L rises 1000-fold within a
    tenth of a log unit), the line search gives up without a single iteration; the stage is then
    restarted with first steps 100 and 10,000 times shorter."""
    for shrink in (1.0, 1e-2, 1e-4):
        def objective(z, scale=scale * shrink):
            v, g = raw_objective(z)
            return v * scale, g * scale
        y = x
        if n_sig:
            sig0 = x[q:].copy()

            def structural(xs, sig0=sig0):
                v, g = objective(np.concatenate([xs, sig0]))
                return v, g[:q]
            res = minimize(structural, x[:q], jac=True, method="L-BFGS-B", bounds=bounds[:q],
                           options={"maxiter": 300})
            y = np.concatenate([res.x, sig0])
        res = minimize(objective, y, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-8})
        if res.nit > 0 or res.success:
            return res
    return res


def _screened_starts(objective, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int, rng) -> list:
    """`n` further starts: the best of 2 × SCREEN points (one solve each), half drawn uniformly over the
    log-scale search box of the structural parameters and half around x0 (SD 0.7 on the log scale); the
    residual SDs as in x0. Real subjects' optima can lie tens of times from the defaults in several
    parameters at once, where draws around the defaults never land."""
    if n <= 0:
        return []
    q = lo.size
    size = max(SCREEN, 4 * n)
    draws = np.clip(np.vstack([rng.uniform(lo, hi, size=(size, q)), x0[:q] + rng.normal(0.0, 0.7, (size, q))]),
                    lo, hi)
    candidates = np.tile(x0, (draws.shape[0], 1))
    candidates[:, :q] = draws
    values = np.array([objective(x)[0] for x in candidates])
    order = [i for i in np.argsort(values) if values[i] < FAILED]
    return [candidates[i] for i in order[:n]]


def _summarise(problem: Problem, subject: Subject, best, sigma_fixed: Mapping[str, float] | None = None):
    """SubjectFit from an optimiser result: observed-information SEs, intervals, warnings."""
    objective, unpack, est_sigma = objective_factory(problem, subject, sigma_fixed)
    bounds = search_bounds(problem, len(est_sigma))
    if best is None or best.fun >= FAILED:
        base = problem.base_parameters(subject)
        names = problem.free + tuple(problem.sigma_names[j] for j in est_sigma)
        nan = np.full(len(names), np.nan)
        return SubjectFit(subject.id, names, nan, nan, nan, nan, np.full((len(names),) * 2, np.nan), np.nan,
                          subject.n_observations, False, "no start could be solved", ("fit failed",), base,
                          np.full(len(problem.sigma_names), np.nan))
    x = best.x
    warnings = []
    names = problem.free + tuple(problem.sigma_names[j] for j in est_sigma)
    # a parameter held at a bound of the search box that the objective pushes against is a constrained
    # estimate: the information matrix is that of the others (conditional on it), and it gets no SE
    lo, hi = np.array(bounds).T
    g = objective(x)[1]
    held = ((x - lo < 1e-3) & (g > 0)) | ((hi - x < 1e-3) & (g < 0))
    inside = np.flatnonzero(~held)
    H_in = _observed_information(objective, x, inside)
    cov = np.full((x.size, x.size), np.nan)
    if _positive_definite(H_in):
        if inside.size:
            cov[np.ix_(inside, inside)] = np.linalg.inv(H_in)
    else:  # not finite (a solve failed nearby), not positive definite, or too ill-conditioned
        sub = np.linalg.pinv(H_in) if np.all(np.isfinite(H_in)) else np.full(H_in.shape, np.nan)
        warnings.append("information matrix near-singular: some parameters are not identifiable")
        unidentified = _unidentified(H_in)
        if unidentified.any():
            # a pseudo-inverse gives such a parameter SE 0 (a zero-width interval): report no SE instead
            sub[unidentified, :] = np.nan
            sub[:, unidentified] = np.nan
            warnings.append(f"no information on {', '.join(names[k] for k, u in zip(inside, unidentified) if u)}: "
                            f"SE and 95% interval not available (NaN)")
        cov[np.ix_(inside, inside)] = sub
    with np.errstate(invalid="ignore"):
        se_log = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        corr = cov / np.outer(se_log, se_log)
        estimates = np.exp(x)
        lower, upper = np.exp(x - Z95 * se_log), np.exp(x + Z95 * se_log)
    for k, name in enumerate(names):
        lo, hi = bounds[k]
        if x[k] - lo < 1e-3 or hi - x[k] < 1e-3:
            warnings.append(f"{name} at its bound")
        elif se_log[k] > 2.0:
            warnings.append(f"{name} poorly identified (SE on log scale {se_log[k]:.1f})")
    measured = subject.n_observations - subject.n_censored
    if measured < len(names):
        warnings.append(f"{measured} measured observations for {len(names)} estimated parameters: not "
                        f"identifiable from this subject alone")
    p, log_sigma = unpack(x)
    # L-BFGS-B reports a failed line search when it starts at (or reaches) the optimum within the noise
    # of the ODE solution: a stationary point (projected gradient ~0) is converged all the same
    projected = np.where(((x <= lo + 1e-9) & (g > 0)) | ((x >= hi - 1e-9) & (g < 0)), 0.0, g)
    stationary = bool(np.max(np.abs(projected)) <= STATIONARY)
    converged = (bool(best.success) or stationary) and not any("near-singular" in w for w in warnings)
    return SubjectFit(subject.id, names, estimates, estimates * se_log, lower, upper, corr, float(best.fun),
                      subject.n_observations, converged, str(best.message), tuple(warnings), p, log_sigma)


def _unidentified(H: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Parameters with a share in a (near-)null direction of the information matrix H (or a non-finite H)."""
    if not np.all(np.isfinite(H)):
        return np.ones(H.shape[0], dtype=bool)
    eig, vectors = np.linalg.eigh(H)
    null = eig <= max(eig.max(), 0.0) * rtol
    return np.sum(vectors[:, null] ** 2, axis=1) > 1e-6


def _hessian(objective, x, step=1e-4):
    """Central differences of the analytic gradient, symmetrised."""
    n = x.size
    H = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = step
        H[i] = (objective(x + e)[1] - objective(x - e)[1]) / (2 * step)
    return 0.5 * (H + H.T)


def _observed_information(objective, x, inside):
    """The Hessian of `objective` at x by differences of its gradient, restricted to `inside`.

    Step 1e-4 on the log scale first; where that Hessian is not positive definite, steps 1e-5 and 1e-6
    are tried, and a smaller step is taken only when it and a step ten times smaller again agree (positive
    definite both, diagonals within 10%). An objective with a cliff (a leukaemia killed abruptly between
    two samples: curvature 1e7 along one direction, 1 along the others) has third derivatives large enough
    that differences over 1e-4 give a spurious negative eigenvalue; a real saddle stays indefinite at
    every step."""
    def restricted(step):
        H = _hessian(objective, x, step)
        return H[np.ix_(inside, inside)]

    first = restricted(1e-4)
    if _positive_definite(first):
        return first
    for step in (1e-5, 1e-6):
        H, check = restricted(step), restricted(step / 10)
        if _positive_definite(H) and _positive_definite(check) and \
                np.allclose(np.diag(H), np.diag(check), rtol=0.1, atol=0.0):
            return H
    return first


def _positive_definite(H: np.ndarray) -> bool:
    """Finite, positive definite and condition number at most 1e10 (an information matrix to invert)."""
    if not np.all(np.isfinite(H)):
        return False
    eig = np.linalg.eigvalsh(H)
    return bool(eig.size == 0 or (eig.min() > 0 and eig.max() / eig.min() <= 1e10))
