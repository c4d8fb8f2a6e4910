"""The objective of one subject's fit: −log L with its gradient from forward sensitivities.

`Problem` holds what every subject shares (augmented model, free set, residual-error names, solver);
`objective_factory` gives −log L(x) and its gradient for one subject, x = log free parameters then the
log residual SDs that are estimated; with log-normal priors (`Problem.priors`, cartkin.stats.priors) it is
the −log posterior, −log L + Σ (x_j − log median_j)² / (2 SD_j²). Individual fits and profile likelihoods both optimise it.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ...codegen import compile_model
from ...data.dataset import Subject
from ...dosing import Regimen
from ...errors import CartkinError
from ...model.definition import Model
from ...simulation.run import solve_subjects
from ...solve.solver import Solver
from ...solve import status as st
from ...stats.error_models import ErrorModel, error_model
from .sensitivities import augmented_model, sensitivity_name


FAILED = 1e10  # objective value where the model cannot be solved (large, but finite for line searches)


SPAN = math.log(1000.0)  # estimates are searched within 1000-fold of the model default (or prior median)
PRIOR_SPAN = 5.0         # ... or within 5 SDs of the log of a prior's median (MAP), at most 10^6-fold


class Problem:
    """The compiled pieces shared by every subject: augmented model, free set, error model."""

    def __init__(self, model: Model, free: tuple[str, ...], fixed: Mapping[str, float], error: str | ErrorModel,
                 sigma_fixed: Mapping[str, float], regimen: Regimen | None, solver: Solver,
                 observables: Sequence[str], priors: Mapping | None = None):
        self.error_model = error_model(error)
        self.error = self.error_model.name  # canonical name
        self.model = model
        self.free = free
        self.free_index = np.array([model.parameter_index(q) for q in free], dtype=np.int64)
        self.augmented = augmented_model(model, free)
        self.module = compile_model(self.augmented)
        self.regimen = regimen
        self.solver = solver
        self.fixed = dict(fixed)
        self.observables = tuple(observables)  # observables with data
        # gradient observable indices in the augmented model: [observable k][free j]
        aug_obs = self.augmented.observables
        self.value_index = [aug_obs.index(o) for o in model.observables]
        self.grad_index = np.array([[aug_obs.index(sensitivity_name(o, q)) for q in free]
                                    for o in model.observables], dtype=np.int64)
        self.sigma_names = list(self.error_model.sigma_names(self.observables))
        for name in sigma_fixed:
            if name not in self.sigma_names:
                raise CartkinError(f"unknown residual parameter {name!r}; these exist: {', '.join(self.sigma_names)}")
        self.sigma_fixed = dict(sigma_fixed)
        self.priors = dict(priors or {})  # name -> cartkin.stats.priors.LogNormalPrior (MAP when not empty)
        self.prior_index = np.array([free.index(n) for n in self.priors], dtype=np.int64)
        self.prior_log_median = np.array([math.log(pr.median) for pr in self.priors.values()])
        self.prior_sd = np.array([pr.sd for pr in self.priors.values()])

    def __getstate__(self) -> dict:
        """Pickled without its compiled module (another process loads its own, from its cache)."""
        return {k: v for k, v in self.__dict__.items() if k != "module"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.module = compile_model(self.augmented)

    def prior_penalty(self, x) -> tuple[float, np.ndarray]:
        """Σ (x_j − log median_j)² / (2 SD_j²) over the parameters with priors, and its gradient in x."""
        grad = np.zeros_like(x)
        if not self.priors:
            return 0.0, grad
        z = (x[self.prior_index] - self.prior_log_median) / self.prior_sd
        grad[self.prior_index] = z / self.prior_sd
        return 0.5 * float(z @ z), grad

    def sigma_slice(self, log_sigma_all, k_model_obs: int):
        """The log σ's of model observable `k_model_obs` within all the log σ's."""
        ns = self.error_model.n_sigmas
        j = self.observables.index(self.model.observables[k_model_obs])
        return log_sigma_all[j * ns:(j + 1) * ns]

    def base_parameters(self, subject: Subject) -> np.ndarray:
        return subject.parameters(self.model, self.fixed)

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


def objective_factory(problem: Problem, subject: Subject, sigma_fixed: Mapping[str, float] | None = None):
    """(objective(x) -> (−log L or −log posterior, gradient), unpack(x) -> (parameters, log σ's), estimated σ indices).

    x = log free parameters, then the log σ's not in `sigma_fixed` (default: the problem's)."""
    sigma_fixed = problem.sigma_fixed if sigma_fixed is None else sigma_fixed
    base = problem.base_parameters(subject)
    q = len(problem.free)
    sigma_names = problem.sigma_names
    em = problem.error_model
    est_sigma = [j for j, n in enumerate(sigma_names) if n not in sigma_fixed]
    fixed_log_sigma = np.array([math.log(sigma_fixed.get(n, 1.0)) for n in sigma_names])
    # each observation's position among the observables with data, and its σ's in the flat σ vector
    slot = np.array([problem.observables.index(problem.model.observables[k]) for k in subject.observable_index],
                    dtype=np.int64)
    sigma_index = slot[None, :] * em.n_sigmas + np.arange(em.n_sigmas)[:, None]  # n_sigmas × observations

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
        total, d_pred, d_log_sigma = em.negative_log_likelihood(pred, subject.values, subject.censored,
                                                                subject.limits, np.exp(log_sigma)[sigma_index])
        if not math.isfinite(total):
            return FAILED, np.zeros_like(x)
        d_logsig = np.bincount(sigma_index.ravel(), weights=d_log_sigma.ravel(), minlength=len(sigma_names))
        with np.errstate(over="ignore", invalid="ignore"):
            g_theta = (d_pred @ grad) * p[problem.free_index]  # chain rule to log parameters
        if not np.all(np.isfinite(g_theta)):  # sensitivities overflowed: a wall to step back from
            return FAILED, np.zeros_like(x)
        gradient = np.concatenate([g_theta, d_logsig[est_sigma]])
        if problem.priors:
            penalty, d_penalty = problem.prior_penalty(x)
            return total + penalty, gradient + d_penalty
        return total, gradient

    return objective, unpack, est_sigma


def search_bounds(problem: Problem, n_sigma: int) -> list[tuple[float, float]]:
    """Log-scale bounds, then the σ's. A parameter is searched within its own bounds and within 1000-fold
    of the model default; with a prior (MAP), within ±PRIOR_SPAN SDs of the log of the prior's median
    instead (beyond that the prior density is below e^-12.5 of its peak), at most 10^6-fold (a prior from
    a population fit can have an SD of 5: its 5 SDs would reach corners where the solve of a stiff,
    oscillating trajectory is slowest)."""
    bounds = []
    for name in problem.free:
        info = problem.model.parameter(name)
        centre, span = math.log(info.default), SPAN
        prior = problem.priors.get(name)
        if prior is not None:
            centre, span = math.log(prior.median), min(2 * SPAN, PRIOR_SPAN * prior.sd)
        lo = max(math.log(info.lower) if info.lower > 0 else -np.inf, centre - span)
        hi = min(math.log(info.upper) if math.isfinite(info.upper) else np.inf, centre + span)
        bounds.append((lo, hi))
    return bounds + [(math.log(1e-4), math.log(1e2))] * n_sigma

