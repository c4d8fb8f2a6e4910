"""The statistical model of a population fit, and batched predictions for many subjects at once.

Individual parameters are log-normal: for each estimated parameter j of subject i

    log θ_ij = φ_ij = μ_j + Σ_e β_e x_ie + η_ij,     η_i ~ N(0, Ω)

where μ_j is the log typical value (at the reference covariate values) and each covariate effect e on
parameter j adds β_e x_ie with x_ie = log(c_i / c_ref) (``power``: θ ∝ (c / c_ref)^β) or
x_ie = c_i − c_ref (``exp``: θ ∝ exp(β (c − c_ref))); c_ref is the median over the fitted subjects.
Covariates are model parameters set per subject by the data (``--covariate Reg=nB0`` makes nB0 one).

`Design` lays out any list of subjects (repeats allowed: chains, importance samples, VPC replicates) as
the ragged arrays of the compiled batch solver, so one call solves every row with its own parameters,
observation times and doses; `Design.nll` sums the residual error model's per-observation −log
likelihood (`cartkin.stats.error_models`, M3 for censored observations) within each row.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy.special import log_ndtr, ndtri

from ...codegen import compile_model
from ...dosing import Regimen
from ...errors import CartkinError
from ...model.definition import Model, unknown_name_message
from ...simulation.run import solve_flat
from ...solve.solver import Solver
from ...solve import status as st
from ...data.dataset import Dataset
from ...stats.covariates import CovariateEffect
from ...stats.error_models import ErrorModel, error_model


class PopulationModel:
    """Structure of a population fit: which parameters vary, covariates, fixed values, residual error.

    Shared by the estimation (saem.py), the visual predictive check (vpc.py) and reloading a fit.
    """

    def __init__(self, model: Model, data: Dataset, parameters: Sequence[str], fixed: Mapping[str, float],
                 error: str | ErrorModel, effects: Sequence[CovariateEffect], regimen: Regimen | None, solver: Solver):
        self.model = model
        self.data = data
        self.parameters = tuple(parameters)
        self.fixed = dict(fixed)
        self.error_model = error_model(error)
        self.error = self.error_model.name  # canonical name, as fit.json records it
        self.regimen = regimen
        self.solver = solver
        self.module = compile_model(model)
        self.observables = data.observables_used
        self.sigma_names = self.error_model.sigma_names(self.observables)
        self.free_index = np.array([model.parameter_index(q) for q in self.parameters], dtype=np.int64)
        self.lower = np.array([model.parameter(q).lower for q in self.parameters])
        self.upper = np.array([model.parameter(q).upper for q in self.parameters])
        covariate_names = data.covariate_names
        checked = []
        for e in effects:
            if e.parameter not in self.parameters:
                if e.parameter not in model.parameter_names:
                    raise CartkinError(f"covariate effect {e.parameter}={e.covariate}: "
                                       + unknown_name_message("parameter", e.parameter, model.parameter_names,
                                                              model.name))
                raise CartkinError(f"covariate effect {e.parameter}={e.covariate}: {e.parameter} is not estimated "
                                   f"(estimated: {', '.join(self.parameters)})")
            if e.covariate not in covariate_names:
                have = ", ".join(covariate_names) or "none; map a column with --covariate COLUMN=PARAMETER"
                raise CartkinError(f"covariate effect {e.parameter}={e.covariate}: {e.covariate} is not a covariate "
                                   f"in the data (covariates: {have})")
            values = np.array([s.covariates.get(e.covariate, np.nan) for s in data.subjects])
            if not np.all(np.isfinite(values)):
                missing = data.subjects[int(np.flatnonzero(~np.isfinite(values))[0])].id
                raise CartkinError(f"covariate effect {e.parameter}={e.covariate}: subject {missing} has no "
                                   f"{e.covariate} value")
            if e.kind == "power" and np.any(values <= 0):
                raise CartkinError(f"covariate effect {e.parameter}={e.covariate}:power needs {e.covariate} > 0 "
                                   f"(use :exp for covariates that can be 0 or negative)")
            if any(c.parameter == e.parameter and c.covariate == e.covariate for c in checked):
                raise CartkinError(f"covariate effect {e.parameter}={e.covariate} is given twice")
            reference = float(np.median(values)) if e.reference is None else float(e.reference)
            if e.kind == "power" and not reference > 0:
                raise CartkinError(f"covariate effect {e.parameter}={e.covariate}: reference must be > 0")
            checked.append(CovariateEffect(e.parameter, e.covariate, e.kind, reference))
        self.effects = tuple(checked)
        self.effect_parameter = np.array([self.parameters.index(e.parameter) for e in self.effects], dtype=np.int64)
        # per subject: covariate terms x_ie (subjects × effects) and the base parameter vector
        self.covariate_terms = np.array([[e.transform(s.covariates[e.covariate]) for e in self.effects]
                                         for s in data.subjects], dtype=float).reshape(data.n_subjects,
                                                                                        len(self.effects))
        self.base = np.array([s.parameters(model, self.fixed) for s in data.subjects])
        self.events = [(s.regimen or regimen or Regimen.none()).events(model) for s in data.subjects]
        self._designs: dict = {}

    def __getstate__(self) -> dict:
        """Pickled without its compiled module and cached designs (another process makes its own)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("module", "_designs")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _designs={})
        self.module = compile_model(self.model)

    # --- structure ----------------------------------------------------------------------------------
    @property
    def n_parameters(self) -> int:
        return len(self.parameters)

    @property
    def n_effects(self) -> int:
        return len(self.effects)

    @property
    def n_fixed_effects(self) -> int:
        """μ's and covariate coefficients: the columns of the design matrix X_i."""
        return self.n_parameters + self.n_effects

    def design_matrices(self, subjects: np.ndarray | None = None) -> np.ndarray:
        """X_i (subjects × q × (q + effects)): φ_i mean = X_i [μ, β]."""
        subjects = np.arange(self.data.n_subjects) if subjects is None else np.asarray(subjects)
        q = self.n_parameters
        X = np.zeros((subjects.size, q, self.n_fixed_effects))
        X[:, np.arange(q), np.arange(q)] = 1.0
        for e in range(self.n_effects):
            X[:, self.effect_parameter[e], q + e] = self.covariate_terms[subjects, e]
        return X

    def mean_phi(self, fixed_effects: np.ndarray, subjects: np.ndarray | None = None) -> np.ndarray:
        """Typical log parameters of each subject (its covariates applied, η = 0)."""
        return self.design_matrices(subjects) @ fixed_effects

    def parameter_matrix(self, phi: np.ndarray, subjects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(full parameter rows, rows inside every parameter's bounds) for log parameters phi."""
        with np.errstate(over="ignore"):
            theta = np.exp(phi)
        inside = np.all(np.isfinite(theta) & (theta >= self.lower) & (theta <= self.upper), axis=1)
        P = self.base[subjects].copy()
        P[:, self.free_index] = np.where(inside[:, None], theta, np.exp(np.clip(phi, -30, 30)))
        P[:, self.free_index] = np.clip(P[:, self.free_index], self.lower, self.upper)
        return P, inside

    def design(self, subjects: Sequence[int]) -> "Design":
        """The batched layout of these subject rows (cached for repeated row sets)."""
        subjects = np.asarray(subjects, dtype=np.int64)
        key = subjects.tobytes()
        if key not in self._designs:
            if len(self._designs) > 64:
                self._designs.clear()
            self._designs[key] = Design(self, subjects)
        return self._designs[key]

    def curves(self, phi: np.ndarray, subjects: Sequence[int], times: np.ndarray) -> np.ndarray:
        """Observables of each row on a common time grid (rows × times × model observables); NaN where a
        row cannot be solved."""
        subjects = np.asarray(subjects, dtype=np.int64)
        times = np.asarray(times, dtype=float)
        P, inside = self.parameter_matrix(np.atleast_2d(phi), subjects)
        n = subjects.size
        t_offsets = np.arange(n + 1, dtype=np.int64) * times.size
        t_flat = np.tile(times, n)
        n_events = np.array([len(self.events[i][0]) for i in subjects], dtype=np.int64)
        ev_offsets = np.zeros(n + 1, dtype=np.int64)
        ev_offsets[1:] = np.cumsum(n_events)
        events = [np.concatenate([self.events[i][k] for i in subjects]) for k in range(4)]
        out, _, codes, _, _ = solve_flat(self.model, P, t_flat, t_offsets, events, ev_offsets, self.solver)
        obs = np.empty((t_flat.size, len(self.model.observables)))
        self.module.observe_batch(t_flat, t_offsets, out, np.ascontiguousarray(P), obs)
        obs = obs.reshape(n, times.size, -1)
        obs[~((codes == st.SUCCESS) & inside)] = np.nan
        return obs

    def sigma_per_observation(self, sigma: np.ndarray, obs_slot: np.ndarray) -> np.ndarray:
        """The σ's of each observation (n_sigmas × observations) from the residual parameter vector."""
        s = np.asarray(sigma, dtype=float).reshape(len(self.observables), self.error_model.n_sigmas)
        return s[obs_slot].T

    def initial_sigma(self) -> np.ndarray:
        """Start values of the residual parameters, from each observable's scale in the data."""
        out = []
        for o in self.observables:
            k = self.model.observables.index(o)
            values = np.concatenate([s.values[(s.observable_index == k) & ~s.censored] for s in self.data.subjects])
            scale = float(np.median(np.abs(values))) if values.size else 1.0
            scale = scale if scale > 0 else 1.0
            out.append(self.error_model.initial_sigmas(scale))
        return np.concatenate(out).astype(float)


class Design:
    """Rows (subject indices, repeats allowed) laid out for one batched compiled solve.

    Observations of all rows are flattened: `row`, `y`, `censored`, `limit`, `slot` (index into the
    population model's observables) hold one entry per observation; `starts` are each row's first.
    """

    def __init__(self, pm: PopulationModel, subjects: np.ndarray):
        self.pm = pm
        self.subjects = subjects
        data = pm.data.subjects
        model = pm.model
        slot_of = {model.observables.index(o): j for j, o in enumerate(pm.observables)}
        uniq, inverse = [], []
        for s in data:
            u, inv = np.unique(s.times, return_inverse=True)
            uniq.append(u)
            inverse.append(inv)
        n_times = np.array([uniq[i].size for i in subjects], dtype=np.int64)
        self.t_offsets = np.zeros(subjects.size + 1, dtype=np.int64)
        self.t_offsets[1:] = np.cumsum(n_times)
        self.t_flat = np.concatenate([uniq[i] for i in subjects]) if subjects.size else np.empty(0)
        n_events = np.array([len(pm.events[i][0]) for i in subjects], dtype=np.int64)
        self.ev_offsets = np.zeros(subjects.size + 1, dtype=np.int64)
        self.ev_offsets[1:] = np.cumsum(n_events)
        self.events = [np.concatenate([pm.events[i][k] for i in subjects]) if subjects.size else np.empty(0)
                       for k in range(4)]
        n_obs = np.array([data[i].n_observations for i in subjects], dtype=np.int64)
        self.starts = np.zeros(subjects.size + 1, dtype=np.int64)
        self.starts[1:] = np.cumsum(n_obs)
        self.row = np.repeat(np.arange(subjects.size), n_obs)
        self.time_position = np.concatenate([self.t_offsets[r] + inverse[i] for r, i in enumerate(subjects)])
        self.column = np.concatenate([data[i].observable_index for i in subjects])
        self.y = np.concatenate([data[i].values for i in subjects])
        self.censored = np.concatenate([data[i].censored for i in subjects])
        self.limit = np.concatenate([data[i].limits for i in subjects])
        self.slot = np.array([slot_of[int(k)] for k in self.column], dtype=np.int64)
        self.times = self.t_flat[self.time_position]
        self.n_rows = subjects.size

    def predict(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prediction per observation, row usable) for the rows' log parameters `phi` (rows × q)."""
        P, inside = self.pm.parameter_matrix(phi, self.subjects)
        return self.predict_parameters(P, inside)

    def predict_parameters(self, P: np.ndarray, inside: np.ndarray | None = None):
        """Predictions from full parameter rows (rows × model parameters)."""
        pm = self.pm
        out, _, codes, _, _ = solve_flat(pm.model, P, self.t_flat, self.t_offsets, self.events, self.ev_offsets,
                                         pm.solver)
        obs = np.empty((self.t_flat.size, len(pm.model.observables)))
        pm.module.observe_batch(self.t_flat, self.t_offsets, out, np.ascontiguousarray(P), obs)
        pred = obs[self.time_position, self.column]
        ok = codes == st.SUCCESS
        if inside is not None:
            ok &= inside
        return pred, ok

    def row_sums(self, values: np.ndarray) -> np.ndarray:
        """Sum of per-observation values within each row."""
        if values.size == 0:
            return np.zeros(self.n_rows)
        return np.add.reduceat(values, self.starts[:-1]) if self.n_rows else np.zeros(0)

    def nll(self, pred: np.ndarray, ok: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """−log p(y | row's parameters) per row (+inf where the row cannot be used)."""
        em = self.pm.error_model
        values = em.pointwise(pred, self.y, self.censored, self.limit, self.pm.sigma_per_observation(sigma, self.slot))
        if em.log_scale:
            # SAEM imputes censored values from g(L) − g(f), which needs f > 0: a row predicting a censored
            # point at or below 0 is not used (the likelihood alone would count that point as certainly censored)
            values = np.where(pred > 0, values, np.inf)
        total = self.row_sums(values)
        total[~ok] = np.inf
        total[~np.isfinite(total)] = np.inf
        return total


def truncated_normal_below(rng: np.random.Generator, upper: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Draws from N(0, sd²) truncated to (−∞, upper] (inverse CDF in log space; far tails exponential)."""
    a = np.asarray(upper, dtype=float) / sd
    v = rng.random(a.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_u = log_ndtr(a) + np.log(np.maximum(v, 1e-300))
        z = ndtri(np.exp(log_u))
    tail = ~np.isfinite(z) | (a < -30)
    if np.any(tail):  # Φ(a) underflows: the truncated normal is ≈ a − Exp(1)/|a|
        at = np.minimum(a[tail], -1e-3)
        z[tail] = at - rng.exponential(1.0, at.shape) / np.abs(at)
    return np.minimum(z, a) * sd


def check_parameters(model: Model, data: Dataset, parameters: Sequence[str], fixed: Mapping[str, float]) -> tuple:
    """Validate the estimated set and fixed values against the model and the data's covariates."""
    for name, value in fixed.items():
        model.parameter_index(name)
        info = model.parameter(name)
        if not (math.isfinite(value) and info.lower <= value <= info.upper):
            raise CartkinError(f"--fix {name}={value}: outside the bounds of {name} [{info.lower}, {info.upper}]")
    parameters = tuple(parameters)
    if not parameters:
        raise CartkinError(f"nothing to estimate: name parameters with --estimate (model {model.name} has no default)")
    covariates = set(data.covariate_names)
    for name in parameters:
        model.parameter_index(name)
        if name in fixed:
            raise CartkinError(f"{name} is both estimated and fixed")
        if name in covariates:
            raise CartkinError(f"{name} is a covariate in the data; it cannot also be estimated")
        if parameters.count(name) > 1:
            raise CartkinError(f"{name} is listed twice in the estimated parameters")
        if not model.parameter(name).default > 0:
            raise CartkinError(f"{name} must be positive to have a log-normal distribution")
    return parameters
