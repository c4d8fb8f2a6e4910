"""Individual maximum-likelihood fits with censored observations and analytic gradients.

For each subject: parameters are estimated on the log scale within their bounds (L-BFGS-B, seeded
multi-start); the objective is −log L with the M3 term for censored points; its gradient comes from the
forward sensitivity model (cartkin.fitting.sensitivities) solved in compiled code. Standard errors come
from the observed Fisher information (the Hessian of −log L, by central differences of the analytic
gradient), on the log scale; intervals are exp(φ ± 1.96 SE). Residual standard deviations (one per
observable and error component) are estimated with the parameters unless fixed: per subject, or with
``pooled_sigma=True`` shared by all subjects (`_fit_pooled`). Profile-likelihood intervals on request
(cartkin.fitting.profile).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

from ..codegen import compile_model
from ..dosing import Regimen
from ..errors import CartkinError
from ..model.definition import Model
from ..model.registry import load_model
from ..simulation.run import Solver, solve_subjects
from ..solve import status as st
from .blas import single_blas_thread
from .data import Dataset, Subject
from .likelihood import KINDS, n_sigmas, negative_log_likelihood, residuals
from .sensitivities import augmented_model, sensitivity_name

Z95 = 1.959963984540054
FAILED = 1e10  # objective value where the model cannot be solved (large, but finite for line searches)
SPAN = math.log(1000.0)  # estimates are searched within 1000-fold of the model default
SCREEN = 50        # points screened over the search box for the multi-start (see _screened_starts)
STATIONARY = 1e-4  # |projected gradient| of −log L per unit log parameter that counts as an optimum


@dataclass(frozen=True, eq=False)
class SubjectFit:
    """One subject's estimates (natural scale), uncertainty and fit statistics."""
    id: str
    names: tuple[str, ...]          # free parameters then sigma names
    estimates: np.ndarray
    standard_errors: np.ndarray     # natural scale (delta method)
    lower: np.ndarray               # 95% interval, natural scale
    upper: np.ndarray
    correlation: np.ndarray
    objective: float                # -log L at the optimum
    n_observations: int
    converged: bool
    message: str
    warnings: tuple[str, ...]
    parameters: np.ndarray          # the full parameter vector used for predictions
    log_sigma: np.ndarray           # every residual SD (estimated or fixed), log scale

    @property
    def aic(self) -> float:
        return 2 * self.objective + 2 * len(self.names)

    @property
    def bic(self) -> float:
        return 2 * self.objective + len(self.names) * math.log(max(self.n_observations, 1))


@dataclass(frozen=True, eq=False)
class FitResult:
    """`cartkin.fit` output: per-subject fits, tables, `.write(outdir)` and `.plot(outdir)`."""
    model: Model
    data: Dataset
    free: tuple[str, ...]
    error: str
    fits: tuple[SubjectFit, ...]
    problem: "_Problem" = field(repr=False)
    pooled_sigma: tuple[tuple[str, float, float], ...] = ()  # (name, estimate, SE of its log) when pooled
    profiles: tuple = ()  # cartkin.fitting.profile.Profile per subject and profiled parameter

    @property
    def objective(self) -> float:
        """Total −log L over all subjects."""
        return float(sum(f.objective for f in self.fits))

    @property
    def n_parameters(self) -> int:
        """Estimated parameters in total: every subject's own, plus the pooled residual SDs."""
        return sum(len(f.names) for f in self.fits) + len(self.pooled_sigma)

    @property
    def aic(self) -> float:
        """AIC of the whole fit (2 × total −log L + 2 × all estimated parameters)."""
        return 2 * self.objective + 2 * self.n_parameters

    def estimates_table(self):
        from ..report.table import Table
        rows = []
        for fit in self.fits:
            row = {"ID": fit.id}
            for k, name in enumerate(fit.names):
                row[name] = fit.estimates[k]
                row[f"{name}_se"] = fit.standard_errors[k]
                row[f"{name}_lower"] = fit.lower[k]
                row[f"{name}_upper"] = fit.upper[k]
            for name, value, se_log in self.pooled_sigma:  # shared by all subjects: same on every row
                row[name] = value
                row[f"{name}_se"] = value * se_log
                row[f"{name}_lower"] = value * math.exp(-Z95 * se_log)
                row[f"{name}_upper"] = value * math.exp(Z95 * se_log)
            profiles = [pr for pr in self.profiles if pr.id == fit.id]
            for pr in profiles:
                row[f"{pr.parameter}_profile_lower"] = pr.lower
                row[f"{pr.parameter}_profile_upper"] = pr.upper
            row.update(objective=fit.objective, AIC=fit.aic, BIC=fit.bic, converged=int(fit.converged),
                       warnings="; ".join(fit.warnings + tuple(w for pr in profiles for w in pr.warnings)))
            rows.append(row)
        columns = tuple(dict.fromkeys(k for row in rows for k in row))  # a failed fit has no profile columns
        for row in rows:
            for k in columns:
                row.setdefault(k, math.nan)
        display = [("ID", lambda r: r["ID"])]
        for name in self.fits[0].names + tuple(n for n, _, _ in self.pooled_sigma):
            display.append((name, lambda r, n=name: _interval_text(r, n)))
        for name in dict.fromkeys(pr.parameter for pr in self.profiles):
            display.append((f"{name} profile", lambda r, n=name: _profile_text(r, n)))
        display += [("-logL", "objective"), ("conv", lambda r: "yes" if r["converged"] else "NO"),
                    ("warnings", lambda r: _shorten(r["warnings"], 60))]
        return Table(columns, tuple(rows), tuple(display), title=f"{self.model.name}: individual estimates "
                     f"[95% CI], {self.error} error")

    def predictions(self, times_per_subject=None):
        """Rows (ID, TIME, DVID, DV, CENS, IPRED, IWRES) for every observation."""
        rows = []
        for fit, subject in zip(self.fits, self.data.subjects):
            pred, _ = self.problem.predict(subject, fit.parameters)
            log_sigma = fit.log_sigma
            iwres = np.full(subject.n_observations, np.nan)
            for k in np.unique(subject.observable_index):
                sel = subject.observable_index == k
                ls = self.problem.sigma_slice(log_sigma, int(k))
                iwres[sel] = residuals(self.error, pred[sel], subject.values[sel], subject.censored[sel], ls)
            for i in range(subject.n_observations):
                rows.append({"ID": subject.id, "TIME": subject.times[i],
                             "DVID": self.model.observables[subject.observable_index[i]],
                             "DV": subject.values[i], "CENS": int(subject.censored[i]), "IPRED": pred[i],
                             "IWRES": iwres[i]})
        return rows

    def write(self, outdir):
        from pathlib import Path
        import csv
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        self.estimates_table().to_csv(outdir / "estimates.csv")
        rows = self.predictions()
        with open(outdir / "predictions.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        with open(outdir / "correlations.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["ID", "parameter", "with", "correlation"])
            for fit in self.fits:  # of the log-scale estimates, from the observed information
                for a in range(len(fit.names)):
                    for b in range(a + 1, len(fit.names)):
                        writer.writerow([fit.id, fit.names[a], fit.names[b], f"{fit.correlation[a, b]:.4g}"])
        files = [outdir / "estimates.csv", outdir / "predictions.csv", outdir / "correlations.csv"]
        if self.profiles:
            from .profile import write_profiles
            files.append(write_profiles(self.profiles, outdir / "profiles.csv"))
        return files

    def plot(self, outdir):
        from pathlib import Path
        from ..report import fit_plots
        files = fit_plots.fit_figures(self, Path(outdir))
        if self.profiles:
            files.append(fit_plots.profile_figure(self, Path(outdir) / "profile_likelihood.png"))
        return files


def _profile_text(row, name):
    from ..report.table import format_number
    lo, hi = row.get(f"{name}_profile_lower", math.nan), row.get(f"{name}_profile_upper", math.nan)
    return (f"[{'0 (open)' if lo == 0 else format_number(lo)}, "
            f"{'inf (open)' if math.isinf(hi) else format_number(hi)}]")


def _shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters at a word boundary, with an ellipsis (the CSV keeps it whole)."""
    if len(text) <= width:
        return text
    return text[:width - 1].rsplit(" ", 1)[0].rstrip(";,") + " …"


def _interval_text(row, name):
    from ..report.table import format_number
    return (f"{format_number(row[name])} [{format_number(row[name + '_lower'])}, "
            f"{format_number(row[name + '_upper'])}]")


class _Problem:
    """The compiled pieces shared by every subject: augmented model, free set, error model."""

    def __init__(self, model: Model, free: tuple[str, ...], fixed: Mapping[str, float], error: str,
                 sigma_fixed: Mapping[str, float], regimen: Regimen | None, solver: Solver,
                 observables: Sequence[str]):
        self.model = model
        self.free = free
        self.free_index = np.array([model.parameter_index(q) for q in free], dtype=np.int64)
        self.augmented = augmented_model(model, free)
        self.module = compile_model(self.augmented)
        self.error = error
        self.regimen = regimen
        self.solver = solver
        self.fixed = dict(fixed)
        self.observables = tuple(observables)  # observables with data
        # gradient observable indices in the augmented model: [observable k][free j]
        aug_obs = self.augmented.observables
        self.value_index = [aug_obs.index(o) for o in model.observables]
        self.grad_index = np.array([[aug_obs.index(sensitivity_name(o, q)) for q in free]
                                    for o in model.observables], dtype=np.int64)
        ns = n_sigmas(error)
        self.sigma_names = []
        for o in self.observables:
            if ns == 1:
                self.sigma_names.append(f"sigma_{o}")
            else:
                self.sigma_names += [f"sigma_add_{o}", f"sigma_prop_{o}"]
        for name in sigma_fixed:
            if name not in self.sigma_names:
                raise CartkinError(f"unknown residual parameter {name!r}; these exist: {', '.join(self.sigma_names)}")
        self.sigma_fixed = dict(sigma_fixed)

    def sigma_slice(self, log_sigma_all, k_model_obs: int):
        ns = n_sigmas(self.error)
        j = self.observables.index(self.model.observables[k_model_obs])
        return log_sigma_all[j * ns:(j + 1) * ns]

    def base_parameters(self, subject: Subject) -> np.ndarray:
        p = np.array([q.default for q in self.model.parameter_info], dtype=float)
        for name, value in subject.covariates.items():
            p[self.model.parameter_index(name)] = value
        for name, value in self.fixed.items():
            p[self.model.parameter_index(name)] = value
        return p

    def predict(self, subject: Subject, p: np.ndarray, times=None, observable_index=None):
        """(prediction, d prediction / d free parameter) at the subject's observations (or given times)."""
        times = subject.times if times is None else times
        k_obs = subject.observable_index if observable_index is None else observable_index
        regimen = subject.regimen or self.regimen or Regimen.none()
        events = regimen.events(self.augmented)
        uniq, inverse = np.unique(times, return_inverse=True)
        out, _, codes, t_fail, _ = solve_subjects(self.augmented, p[None, :], [uniq], [events], self.solver)
        if codes[0] != st.SUCCESS:
            return None, None
        obs = np.empty((uniq.size, len(self.augmented.observables)))
        self.module.observe_batch(uniq, np.array([0, uniq.size], dtype=np.int64), out, p[None, :], obs)
        rows = obs[inverse]
        value_cols = np.array(self.value_index)[k_obs]
        pred = rows[np.arange(len(k_obs)), value_cols]
        grad = np.take_along_axis(rows, self.grad_index[k_obs], axis=1)
        return pred, grad


def fit(model: Model | str, data: Dataset, estimate: Sequence[str] | None = None,
        fix: Mapping[str, float] | None = None, error: str = "proportional",
        sigma: Mapping[str, float] | None = None, regimen: Regimen | None = None, starts: int = 4,
        seed: int = 0, rtol: float = 1e-8, atol: float = 1e-10, progress=None,
        pooled_sigma: bool = False, profile: Sequence[str] = ()) -> FitResult:
    """Fit each subject of `data` by maximum likelihood. See the module docstring.

    pooled_sigma: one residual SD per observable shared by all subjects (estimated jointly with every
    subject's parameters) instead of one per subject; needed when subjects have few observations.
    profile: free parameters to give profile-likelihood intervals (cartkin.fitting.profile)."""
    from .profile import check_profile_names, profile_fits
    from ..progress import as_callback
    model = load_model(model)
    if error not in KINDS:
        raise CartkinError(f"unknown error model {error!r}; choose one of {', '.join(KINDS)}")
    fix = dict(fix or {})
    for name, value in fix.items():
        info = model.parameter(name) if name in model.parameter_names else model.parameter_index(name)
        if not (math.isfinite(value) and info.lower <= value <= info.upper):
            raise CartkinError(f"--fix {name}={value}: outside the bounds of {name} [{info.lower}, {info.upper}]")
    free = tuple(estimate) if estimate else tuple(q for q in model.default_fit if q not in fix)
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
    problem = _Problem(model, free, fix, error, sigma, regimen, Solver("auto", rtol, atol, 100_000),
                       data.observables_used)
    callback = as_callback(progress, len(data.subjects), f"fitting {len(data.subjects)} subjects")
    fits, pooled = [], ()
    with single_blas_thread():
        if pooled_sigma and len(problem.sigma_fixed) < len(problem.sigma_names):
            fits, pooled = _fit_pooled(problem, data.subjects, starts, seed, callback)
        else:
            for i, subject in enumerate(data.subjects):
                fits.append(_fit_subject(problem, subject, starts, np.random.default_rng([seed, i])))
                if callback:
                    callback(i + 1)
        result = FitResult(model, data, free, error, tuple(fits), problem, pooled)
        if profile:
            result = dataclasses.replace(result, profiles=profile_fits(result, profile))
    return result


def _fit_pooled(problem: _Problem, subjects: Sequence[Subject], starts: int, seed: int, callback):
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
            objective = _objective_factory(problem, subject, problem.sigma_fixed)[0]
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


def _objective_factory(problem: _Problem, subject: Subject, sigma_fixed: Mapping[str, float] | None = None):
    """(objective(x) -> (−log L, gradient), unpack(x) -> (parameters, log σ's), estimated σ indices).

    x = log free parameters, then the log σ's not in `sigma_fixed` (default: the problem's)."""
    sigma_fixed = problem.sigma_fixed if sigma_fixed is None else sigma_fixed
    base = problem.base_parameters(subject)
    q = len(problem.free)
    sigma_names = problem.sigma_names
    ns = n_sigmas(problem.error)
    est_sigma = [j for j, n in enumerate(sigma_names) if n not in sigma_fixed]
    fixed_log_sigma = np.array([math.log(sigma_fixed.get(n, 1.0)) for n in sigma_names])
    groups = [(problem.observables.index(problem.model.observables[k]), subject.observable_index == k)
              for k in np.unique(subject.observable_index)]

    def unpack(x):
        p = base.copy()
        p[problem.free_index] = np.exp(x[:q])
        log_sigma = fixed_log_sigma.copy()
        log_sigma[est_sigma] = x[q:]
        return p, log_sigma

    def objective(x):
        p, log_sigma = unpack(x)
        pred, grad = problem.predict(subject, p)
        if pred is None:
            return FAILED, np.zeros_like(x)
        total = 0.0
        d_pred = np.zeros(subject.n_observations)
        d_logsig = np.zeros(len(sigma_names))
        for j, sel in groups:
            v, dp, ds = negative_log_likelihood(problem.error, pred[sel], subject.values[sel], subject.censored[sel],
                                                subject.limits[sel], log_sigma[j * ns:(j + 1) * ns])
            if not math.isfinite(v):
                return FAILED, np.zeros_like(x)
            total += v
            d_pred[sel] = dp
            d_logsig[j * ns:(j + 1) * ns] += ds
        g_theta = (d_pred @ grad) * p[problem.free_index]  # chain rule to log parameters
        return total, np.concatenate([g_theta, d_logsig[est_sigma]])

    return objective, unpack, est_sigma


def _search_bounds(problem: _Problem, n_sigma: int) -> list[tuple[float, float]]:
    """Log-scale bounds: within 1000-fold of the default and the parameter's own bounds; then the σ's."""
    bounds = []
    for name in problem.free:
        info = problem.model.parameter(name)
        lo = max(math.log(info.lower) if info.lower > 0 else -np.inf, math.log(info.default) - SPAN)
        hi = min(math.log(info.upper) if math.isfinite(info.upper) else np.inf, math.log(info.default) + SPAN)
        bounds.append((lo, hi))
    return bounds + [(math.log(1e-4), math.log(1e2))] * n_sigma


def _fit_subject(problem: _Problem, subject: Subject, starts: int, rng,
                 sigma_fixed: Mapping[str, float] | None = None, x_start: np.ndarray | None = None) -> SubjectFit:
    """Multi-start fit of one subject with its uncertainty (see `_optimise_subject`)."""
    best = _optimise_subject(problem, subject, starts, rng, sigma_fixed, x_start)
    return _summarise(problem, subject, best, sigma_fixed)


def _optimise_subject(problem: _Problem, subject: Subject, starts: int, rng,
                      sigma_fixed: Mapping[str, float] | None = None, x_start: np.ndarray | None = None):
    """The best L-BFGS-B result over `starts` starts (None if no start could be solved): the model defaults
    (or `x_start`, log free parameters, for a warm start) and `starts - 1` from `_screened_starts`."""
    objective, unpack, est_sigma = _objective_factory(problem, subject, sigma_fixed)
    q = len(problem.free)
    base = problem.base_parameters(subject)
    theta0 = np.log(base[problem.free_index]) if x_start is None else np.asarray(x_start, dtype=float)
    x0 = np.concatenate([theta0, np.full(len(est_sigma), math.log(1.0))])
    bounds = _search_bounds(problem, len(est_sigma))
    best = None
    raw_objective = objective
    lo, hi = np.array(bounds).T
    first = np.clip(x0, lo, hi)
    for x in [first] + _screened_starts(raw_objective, first, lo[:q], hi[:q], starts - 1, rng):
        # scale so the first gradient is O(1): L-BFGS-B's first step is the raw negative gradient,
        # which would otherwise jump to the bounds
        f0, g0 = raw_objective(x)
        if f0 >= FAILED:
            continue
        scale = 1.0 / max(1.0, float(np.max(np.abs(g0))))

        def objective(z, scale=scale):
            v, g = raw_objective(z)
            return v * scale, g * scale
        try:
            # stage 1: structural parameters with the residual SDs held at their start values (a large
            # initial misfit otherwise inflates the SDs and flattens the surface); stage 2: everything
            n_sig = len(est_sigma)
            if n_sig:
                sig0 = x[q:].copy()

                def structural(xs, sig0=sig0):
                    v, g = objective(np.concatenate([xs, sig0]))
                    return v, g[:q]
                res = minimize(structural, x[:q], jac=True, method="L-BFGS-B", bounds=bounds[:q],
                               options={"maxiter": 300})
                x = np.concatenate([res.x, sig0])
            res = minimize(objective, x, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-8})
        except (FloatingPointError, ValueError):  # a start that cannot be evaluated
            continue
        res.fun = raw_objective(res.x)[0]
        if best is None or res.fun < best.fun:
            best = res
    return best


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


def _summarise(problem: _Problem, subject: Subject, best, sigma_fixed: Mapping[str, float] | None = None):
    """SubjectFit from an optimiser result: observed-information SEs, intervals, warnings."""
    objective, unpack, est_sigma = _objective_factory(problem, subject, sigma_fixed)
    bounds = _search_bounds(problem, len(est_sigma))
    if best is None or best.fun >= FAILED:
        base = problem.base_parameters(subject)
        names = problem.free + tuple(problem.sigma_names[j] for j in est_sigma)
        nan = np.full(len(names), np.nan)
        return SubjectFit(subject.id, names, nan, nan, nan, nan, np.full((len(names),) * 2, np.nan), np.nan,
                          subject.n_observations, False, "no start could be solved", ("fit failed",), base,
                          np.full(len(problem.sigma_names), np.nan))
    x = best.x
    warnings = []
    H = _hessian(objective, x)
    names = problem.free + tuple(problem.sigma_names[j] for j in est_sigma)
    try:
        eig = np.linalg.eigvalsh(H)
        if eig.min() <= 0 or eig.max() / eig.min() > 1e10:
            raise np.linalg.LinAlgError
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(H)
        warnings.append("information matrix near-singular: some parameters are not identifiable")
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
    g = objective(x)[1]
    lo, hi = np.array(bounds).T
    projected = np.where(((x <= lo + 1e-9) & (g > 0)) | ((x >= hi - 1e-9) & (g < 0)), 0.0, g)
    stationary = bool(np.max(np.abs(projected)) <= STATIONARY)
    converged = (bool(best.success) or stationary) and not any("near-singular" in w for w in warnings)
    return SubjectFit(subject.id, names, estimates, estimates * se_log, lower, upper, corr, float(best.fun),
                      subject.n_observations, converged, str(best.message), tuple(warnings), p, log_sigma)


def _hessian(objective, x, step=1e-4):
    """Central differences of the analytic gradient, symmetrised."""
    n = x.size
    H = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = step
        H[i] = (objective(x + e)[1] - objective(x - e)[1]) / (2 * step)
    return 0.5 * (H + H.T)
