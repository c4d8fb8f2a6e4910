"""Individual maximum-likelihood fits with censored observations and analytic gradients.

For each subject: parameters are estimated on the log scale within their bounds (L-BFGS-B, seeded
multi-start); the objective is −log L with the M3 term for censored points; its gradient comes from the
forward sensitivity model (cartkin.fitting.sensitivities) solved in compiled code. Standard errors come
from the observed Fisher information (the Hessian of −log L, by central differences of the analytic
gradient), on the log scale; intervals are exp(φ ± 1.96 SE). Residual standard deviations (one per
observable and error component) are estimated with the parameters unless fixed.
"""
from __future__ import annotations

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
            row.update(objective=fit.objective, AIC=fit.aic, BIC=fit.bic, converged=int(fit.converged),
                       warnings="; ".join(fit.warnings))
            rows.append(row)
        columns = tuple(rows[0].keys())
        display = [("ID", lambda r: r["ID"])]
        for name in self.fits[0].names:
            display.append((name, lambda r, n=name: _interval_text(r, n)))
        display += [("-logL", "objective"), ("conv", lambda r: "yes" if r["converged"] else "NO"),
                    ("warnings", lambda r: r["warnings"][:60])]
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
        return [outdir / "estimates.csv", outdir / "predictions.csv"]

    def plot(self, outdir):
        from pathlib import Path
        from ..report import fit_plots
        return fit_plots.fit_figures(self, Path(outdir))


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
        seed: int = 0, rtol: float = 1e-8, atol: float = 1e-10, progress=None) -> FitResult:
    """Fit each subject of `data` by maximum likelihood. See the module docstring."""
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
    sigma = {k: float(v) for k, v in (sigma or {}).items()}
    for k, v in sigma.items():
        if not (math.isfinite(v) and v > 0):
            raise CartkinError(f"residual parameter {k} must be > 0, got {v}")
    problem = _Problem(model, free, fix, error, sigma, regimen, Solver("auto", rtol, atol, 100_000),
                       data.observables_used)
    callback = as_callback(progress, len(data.subjects), f"fitting {len(data.subjects)} subjects")
    fits = []
    with single_blas_thread():
        for i, subject in enumerate(data.subjects):
            fits.append(_fit_subject(problem, subject, starts, np.random.default_rng([seed, i])))
            if callback:
                callback(i + 1)
    return FitResult(model, data, free, error, tuple(fits), problem)


def _objective_factory(problem: _Problem, subject: Subject):
    base = problem.base_parameters(subject)
    q = len(problem.free)
    sigma_names = problem.sigma_names
    ns = n_sigmas(problem.error)
    est_sigma = [j for j, n in enumerate(sigma_names) if n not in problem.sigma_fixed]
    fixed_log_sigma = np.array([math.log(problem.sigma_fixed.get(n, 1.0)) for n in sigma_names])
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


def _fit_subject(problem: _Problem, subject: Subject, starts: int, rng) -> SubjectFit:
    model = problem.model
    objective, unpack, est_sigma = _objective_factory(problem, subject)
    q = len(problem.free)
    base = problem.base_parameters(subject)
    x0 = np.concatenate([np.log(base[problem.free_index]), np.full(len(est_sigma), math.log(1.0))])
    bounds = []
    for name in problem.free:
        info = model.parameter(name)
        # within 1000-fold of the default, and within the parameter's own bounds
        lo = max(math.log(info.lower) if info.lower > 0 else -np.inf, math.log(info.default) - SPAN)
        hi = min(math.log(info.upper) if math.isfinite(info.upper) else np.inf, math.log(info.default) + SPAN)
        bounds.append((lo, hi))
    bounds += [(math.log(1e-4), math.log(1e2))] * len(est_sigma)
    best = None
    raw_objective = objective
    for start in range(starts):
        x = x0.copy()
        if start:
            x[:q] += rng.normal(0.0, 0.7, q)
        x = np.clip(x, [b[0] for b in bounds], [b[1] for b in bounds])
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
    objective = raw_objective
    if best is None or best.fun >= FAILED:
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
    p, log_sigma = unpack(x)
    converged = bool(best.success) and not any("near-singular" in w for w in warnings)
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
