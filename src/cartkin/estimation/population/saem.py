"""Population fits: stochastic approximation EM (SAEM, as in Monolix) for log-normal mixed-effects models.

Model (see population_model.py): log θ_ij = μ_j + Σ β x_ij + η_ij, η_i ~ N(0, Ω) (diagonal or full),
observations with a residual error model per observable (`cartkin.stats.error_models`), and
censored observations through Beal's M3 term in the conditional likelihood p(y_i | η_i).

Each iteration k:

1. Simulation (MCMC, Metropolis–Hastings kernels as in Monolix / saemix): kernel 1 proposes from the
   prior N(X_i β, Ω); kernel 2 is a random walk on all components (proposal ∝ chol Ω); kernel 3 a random
   walk on one component at a time. Kernels 2–3 adapt their scales towards 40% acceptance during the
   exploratory phase. Every proposal step evaluates ALL subjects (× chains) in ONE call of the compiled
   batch solver (threads in compiled code; results do not depend on the thread count). Censored values
   are imputed from their truncated conditional distribution (data augmentation) for the residual
   error's sufficient statistics.
2. Stochastic approximation of the sufficient statistics, step γ_k = 1 for the K1 exploratory iterations
   and 1/(k − K1) for the K2 smoothing iterations.
3. Maximisation, closed form: [μ, β] by generalised least squares of the individual log parameters on
   the covariate design (Ω from the last iteration), Ω from the second moments (diagonal or full),
   residual σ's per observable from the error model's statistics of the complete-data residuals
   (proportional, additive: σ² = the averaged mean squared residual; combined1/2: the two σ's maximising
   the likelihood of the current complete data, averaged with the same steps). During the
   exploratory phase, variances may shrink at most 5% per iteration (simulated annealing, as Monolix).

After the iterations, at the final estimates: the conditional distributions are sampled (MCMC, which
gives conditional means and covariances), conditional modes (EBEs) are found by Nelder–Mead from the best
sample, −2 log-likelihood is computed by importance sampling (multivariate t, 5 d.f., around each
subject's conditional mean and covariance, as Monolix), and standard errors come from the observed
Fisher information by Louis' formula estimated on the conditional samples
(I = −Σ_i E[∂²ℓ_i] − Σ_i Cov[∂ℓ_i], ℓ_i the complete-data log-likelihood of subject i; derivatives in
the population parameters by central differences, which is exact enough as ℓ_i is a cheap closed form
once the predictions are stored).

Everything is seeded with one numpy Generator: a seed gives identical estimates.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, logsumexp

from ...dosing import Regimen
from ...errors import CartkinError
from ...execution import executor
from ...model.definition import Model
from ...model.registry import load_model
from ...simulation.run import as_solver
from ...solve.solver import Solver
from ...data.dataset import Dataset
from ...progress import as_callback
from ...stats.error_models import LOG_2PI, ErrorModel, error_model
from ..blas import single_blas_thread
from .results import PopulationEstimates, PopulationResult
from ...stats.covariates import CovariateEffect
from .model import PopulationModel, check_parameters, truncated_normal_below

OMEGA_STRUCTURES = ("diag", "full")
TARGET_ACCEPTANCE = 0.4
ADAPT_RATE = 0.4
T_DOF = 5.0          # degrees of freedom of the importance-sampling proposal
MIN_VARIANCE = 1e-8  # floor of ω² (keeps Ω invertible when a random effect vanishes)


@dataclass(frozen=True)
class SaemOptions:
    """Algorithm settings: iterations (K1 exploratory, K2 smoothing), chains per subject (None: enough for
    50 simulated subjects, as Monolix), MCMC kernel repetitions, annealing factor, post-fit samples."""
    iterations: tuple[int, int] = (300, 150)
    chains: int | None = None
    kernels: tuple[int, int, int] = (2, 2, 2)
    annealing: float = 0.95
    conditional_iterations: int = 200
    importance_samples: int = 1000

    def __post_init__(self):
        k = tuple(self.iterations)
        if len(k) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0 for x in k) \
                or k[0] < 1 or k[1] < 1:
            raise CartkinError(f"iterations must be two integers K1,K2 >= 1, got {self.iterations!r}")
        object.__setattr__(self, "iterations", (int(k[0]), int(k[1])))
        if self.chains is not None and (not isinstance(self.chains, (int, np.integer)) or self.chains < 1):
            raise CartkinError(f"chains must be an integer >= 1, got {self.chains!r}")
        if len(self.kernels) != 3 or any(int(x) < 0 for x in self.kernels) or sum(self.kernels) < 1:
            raise CartkinError(f"kernels must be three repetition counts >= 0, got {self.kernels!r}")
        if not 0 < self.annealing <= 1:
            raise CartkinError(f"annealing must be in (0, 1], got {self.annealing}")
        if self.conditional_iterations < 10:
            raise CartkinError(f"conditional_iterations must be >= 10, got {self.conditional_iterations}")
        if self.importance_samples < 50:
            raise CartkinError(f"importance_samples must be >= 50, got {self.importance_samples}")


def fit_population(model: Model | str, data: Dataset, estimate: Sequence[str] | None = None,
                   fix: Mapping[str, float] | None = None, error: str | ErrorModel = "proportional",
                   covariate_effects: Sequence[CovariateEffect | str] = (), omega: str = "diag",
                   iterations: tuple[int, int] = (300, 150), chains: int | None = None, seed: int = 0,
                   regimen: Regimen | None = None, initial: Mapping[str, float] | None = None,
                   solver: Solver | None = None, importance_samples: int = 1000, starts: int = 1,
                   options: SaemOptions | None = None, data_source: Mapping | None = None, progress=None,
                   client=None):
    """Population (nonlinear mixed-effects) fit of `data` by SAEM; returns a `PopulationResult`.

    estimate: parameters with a log-normal random effect (default: the model's default fit set).
    fix: parameters held at a value for everyone. covariate_effects: `CovariateEffect`s or
    "PARAMETER=COVARIATE[:power|exp]". omega: "diag" or "full". initial: start typical values.
    starts: independent SAEM runs (the first from `initial` with `seed`, the others from typical values
    moved by a log-normal factor, CV ~50%, with seeds [seed, k]); the lowest −2LL is kept and every run's
    −2LL is reported (settings["start_minus2loglik"]). data_source: how the data were read
    ({"files": [...], "options": {...}}), kept for `cartkin vpc`.
    client: a `distributed.Client` to run the starts side by side on a Dask cluster (each start is one
    task; the result is the same as in one process), or None for `cartkin.execution.using`'s client, else
    one after the other in this process.
    """

    started = time.perf_counter()
    model = load_model(model)
    error = error_model(error)
    if not isinstance(data, Dataset):
        raise CartkinError(f"data must be a cartkin Dataset (from read_data), got {type(data).__name__}")
    if omega not in OMEGA_STRUCTURES:
        raise CartkinError(f"omega must be one of {', '.join(OMEGA_STRUCTURES)}, got {omega!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CartkinError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
        raise CartkinError(f"starts must be an integer >= 1, got {starts!r}")
    options = options or SaemOptions(iterations=tuple(iterations), chains=chains,
                                     importance_samples=importance_samples)
    fix = {k: float(v) for k, v in (fix or {}).items()}
    free = check_parameters(model, data, model.estimated(estimate, fix), fix)
    effects = [e if isinstance(e, CovariateEffect) else CovariateEffect.parse(e) for e in covariate_effects]
    pm = PopulationModel(model, data, free, fix, error, effects, regimen, as_solver(solver))
    first = _initial_estimates(pm, initial)
    k1, k2 = options.iterations
    per_run = k1 + k2 + options.conditional_iterations
    bar = as_callback(progress, per_run * starts, f"SAEM {pm.data.n_subjects} subjects")
    shared = (pm, first, options, omega, int(seed), k1 + k2)
    runs = executor(client).map(_saem_start, shared, range(starts), [per_run] * starts, bar)
    t_saem = sum(r[4] for r in runs)
    scores = [r[2]["ofv"] if math.isfinite(r[2]["ofv"]) else math.inf for r in runs]
    best = int(np.argmin(scores))
    estimates, traces, post, chains = runs[best][:4]
    elapsed = time.perf_counter() - started
    settings = {"iterations": [k1, k2], "chains": chains, "kernels": list(options.kernels),
                "annealing": options.annealing, "conditional_iterations": options.conditional_iterations,
                "importance_samples": options.importance_samples, "seed": int(seed), "omega": omega,
                "rtol": pm.solver.rtol, "atol": pm.solver.atol, "method": pm.solver.method,
                "starts": int(starts), "best_start": best + 1,
                "start_minus2loglik": [float(x) for x in scores]}
    return PopulationResult(pm=pm, estimates=estimates, omega_structure=omega, traces=traces, settings=settings,
                            data_source=dict(data_source) if data_source else None,
                            timings={"saem": t_saem, "total": elapsed}, **post)


def _saem_start(shared: tuple, k: int, progress=None) -> tuple:
    """Start k of a multi-start fit (in this process or on a worker): an independent SAEM run from
    `first` (k = 0, seed) or from moved typical values (seed [seed, k]); (estimates, traces, post-fit
    quantities, chains, seconds in SAEM)."""
    pm, first, options, omega, seed, iterations = shared
    rng = np.random.default_rng(seed if k == 0 else [seed, k])
    start = first if k == 0 else _moved(pm, first, rng)
    with single_blas_thread():  # only tiny matrices here; a threaded BLAS would cost more than it gives
        t0 = time.perf_counter()
        sampler = _Sampler(pm, options, rng, start)
        estimates, traces = _saem(pm, sampler, start, options, omega, progress)
        t_saem = time.perf_counter() - t0
        post = _post_fit(pm, sampler, estimates, options, omega, progress, iterations)
    return estimates, traces, post, sampler.chains, t_saem


def _moved(pm: PopulationModel, start: PopulationEstimates, rng: np.random.Generator) -> PopulationEstimates:
    """Start values for another run: typical values times a log-normal factor, within the bounds."""
    moved = start.copy()
    q = pm.n_parameters
    mu = start.fixed_effects[:q] + rng.normal(0.0, 0.5, q)
    with np.errstate(divide="ignore"):
        moved.fixed_effects[:q] = np.clip(mu, np.log(np.maximum(pm.lower, 1e-300)) + 1e-9, np.log(pm.upper) - 1e-9)
    return moved


def _initial_estimates(pm: PopulationModel, initial: Mapping[str, float] | None) -> PopulationEstimates:
    initial = dict(initial or {})
    for name in initial:
        if name not in pm.parameters:
            raise CartkinError(f"initial value for {name}: it is not an estimated parameter "
                               f"(estimated: {', '.join(pm.parameters)})")
    mu = []
    for name in pm.parameters:
        value = float(initial.get(name, pm.model.parameter(name).default))
        info = pm.model.parameter(name)
        if not (math.isfinite(value) and value > 0 and info.lower <= value <= info.upper):
            raise CartkinError(f"initial value {name} = {value:g} must be > 0 and within [{info.lower:g}, "
                               f"{info.upper:g}]")
        mu.append(math.log(value))
    fe = np.concatenate([mu, np.zeros(pm.n_effects)])
    return PopulationEstimates(fe, np.eye(pm.n_parameters), pm.initial_sigma())


class _Sampler:
    """The MCMC state: log parameters of every (chain, subject) row, their predictions and −log p(y|φ)."""

    def __init__(self, pm: PopulationModel, options: SaemOptions, rng: np.random.Generator,
                 start: PopulationEstimates):
        self.pm = pm
        self.rng = rng
        self.kernels = tuple(int(x) for x in options.kernels)
        n = pm.data.n_subjects
        self.chains = options.chains or max(1, math.ceil(50 / n))
        self.subjects = np.tile(np.arange(n), self.chains)  # row r = chain (r // n), subject (r % n)
        self.design = pm.design(self.subjects)
        self.n_rows = self.subjects.size
        self.phi = pm.mean_phi(start.fixed_effects, self.subjects)
        self.pred, self.ok = self.design.predict(self.phi)
        self.uy = self.design.nll(self.pred, self.ok, start.sigma)
        self.scale_all = 0.5
        self.scale_one = np.full(pm.n_parameters, 0.5)
        self.evaluations = 0

    def refresh(self, sigma: np.ndarray) -> None:
        """Recompute −log p(y|φ) after σ changed (predictions are unchanged)."""
        self.uy = self.design.nll(self.pred, self.ok, sigma)

    def _propose(self, candidate, sigma, prior_now=None, prior_new=None):
        pred, ok = self.design.predict(candidate)
        self.evaluations += 1
        uy = self.design.nll(pred, ok, sigma)
        with np.errstate(invalid="ignore"):
            delta = self.uy - uy
            if prior_now is not None:
                delta = delta + prior_now - prior_new
        accept = np.log(self.rng.random(self.n_rows)) < np.where(np.isnan(delta), -np.inf, delta)
        self.phi[accept] = candidate[accept]
        self.uy[accept] = uy[accept]
        self.ok[accept] = ok[accept]
        sel = np.repeat(accept, np.diff(self.design.starts))
        self.pred[sel] = pred[sel]
        return accept

    def sweep(self, est: PopulationEstimates, adapt: bool) -> None:
        """One pass of the three kernels at the population parameters `est`."""
        pm, rng = self.pm, self.rng
        q = pm.n_parameters
        mean = pm.mean_phi(est.fixed_effects, self.subjects)
        chol = np.linalg.cholesky(est.omega)
        inverse = np.linalg.inv(est.omega)

        def prior(phi):
            eta = phi - mean
            return 0.5 * np.einsum("ij,jk,ik->i", eta, inverse, eta)

        for _ in range(self.kernels[0]):
            candidate = mean + rng.standard_normal((self.n_rows, q)) @ chol.T
            self._propose(candidate, est.sigma)
        for _ in range(self.kernels[1]):
            candidate = self.phi + self.scale_all * (rng.standard_normal((self.n_rows, q)) @ chol.T)
            accept = self._propose(candidate, est.sigma, prior(self.phi), prior(candidate))
            if adapt:
                self.scale_all *= 1 + ADAPT_RATE * (accept.mean() - TARGET_ACCEPTANCE)
        sd = np.sqrt(np.diag(est.omega))
        for _ in range(self.kernels[2]):
            for j in range(q):
                candidate = self.phi.copy()
                candidate[:, j] += self.scale_one[j] * sd[j] * rng.standard_normal(self.n_rows)
                accept = self._propose(candidate, est.sigma, prior(self.phi), prior(candidate))
                if adapt:
                    self.scale_one[j] *= 1 + ADAPT_RATE * (accept.mean() - TARGET_ACCEPTANCE)

    def residuals(self, sigma: np.ndarray) -> np.ndarray:
        """g(y) − g(f) for every observation of every row, censored ones imputed below their limit."""
        d = self.design
        em = self.pm.error_model
        r = em.transformed_residuals(self.pred, np.where(d.censored, d.limit, d.y))
        if np.any(d.censored):
            sd = em.sd(self.pred, self.pm.sigma_per_observation(sigma, d.slot))
            c = d.censored
            r[c] = truncated_normal_below(self.rng, r[c], sd[c])
        return r


def _saem(pm: PopulationModel, sampler: _Sampler, start: PopulationEstimates, options: SaemOptions,
          structure: str, callback):
    n = pm.data.n_subjects
    q = pm.n_parameters
    k1, k2 = options.iterations
    X = pm.design_matrices()
    est = start.copy()
    s1 = np.zeros((n, q))
    s2 = np.zeros((q, q))
    n_slots = len(pm.observables)
    ns = pm.error_model.n_sigmas
    slot_rows = [np.flatnonzero(sampler.design.slot == j) for j in range(n_slots)]
    statistics = None  # the error model's sufficient statistics per observable, averaged by SA
    traces = []
    for k in range(1, k1 + k2 + 1):
        exploring = k <= k1
        sampler.sweep(est, adapt=exploring)
        gamma = 1.0 if exploring else 1.0 / (k - k1)
        phi = sampler.phi.reshape(sampler.chains, n, q)
        s1 += gamma * (phi.mean(axis=0) - s1)
        s2 += gamma * (np.einsum("cij,cik->jk", phi, phi) / sampler.chains - s2)
        r = sampler.residuals(est.sigma)
        previous = est.copy()
        # fixed effects by GLS, then Ω
        inverse = np.linalg.inv(est.omega)
        A = np.einsum("iqa,qr,irb->ab", X, inverse, X)
        b = np.einsum("iqa,qr,ir->a", X, inverse, s1)
        est.fixed_effects = np.linalg.solve(A, b)
        m = X @ est.fixed_effects
        omega = (s2 - s1.T @ m - m.T @ s1 + m.T @ m) / n
        omega = 0.5 * (omega + omega.T)
        if structure == "diag":
            omega = np.diag(np.diag(omega))
        est.omega = _regularise(omega, previous.omega, options.annealing if exploring else None)
        # residual error
        em = pm.error_model
        current = np.array([em.statistics(sampler.pred[rows], r[rows], est.sigma[j * ns:(j + 1) * ns])
                            for j, rows in enumerate(slot_rows)])
        statistics = current if statistics is None else statistics + gamma * (current - statistics)
        est.sigma = np.concatenate([em.sigmas_from_statistics(x) for x in statistics])
        if exploring:
            est.sigma = np.maximum(est.sigma, math.sqrt(options.annealing) * previous.sigma)
        sampler.refresh(est.sigma)
        traces.append(_trace_row(est, structure))
        if callback:
            callback(k)
    return est, np.array(traces)


def _regularise(omega: np.ndarray, previous: np.ndarray, annealing: float | None) -> np.ndarray:
    """Floor the variances (annealing: at most a (1 − annealing) drop per iteration); keep Ω invertible."""
    d = np.clip(np.diag(omega), MIN_VARIANCE, None)
    if annealing is not None:
        d = np.maximum(d, annealing * np.diag(previous))
    old = np.sqrt(np.clip(np.diag(omega), MIN_VARIANCE, None))
    scale = np.sqrt(d) / old
    out = omega * np.outer(scale, scale)
    np.fill_diagonal(out, d)
    for _ in range(20):
        try:
            np.linalg.cholesky(out)
            return out
        except np.linalg.LinAlgError:  # shrink correlations until positive definite
            off = out - np.diag(np.diag(out))
            out = np.diag(np.diag(out)) + 0.9 * off
    return np.diag(np.diag(out))


def _trace_row(est: PopulationEstimates, structure: str) -> np.ndarray:
    q = est.omega.shape[0]
    omega = np.diag(est.omega) if structure == "diag" else est.omega[np.tril_indices(q)]
    fe = est.fixed_effects.copy()
    fe[:q] = np.exp(fe[:q])
    return np.concatenate([fe, omega, est.sigma])


# --- after the iterations ---------------------------------------------------------------------------------

def _post_fit(pm: PopulationModel, sampler: _Sampler, est: PopulationEstimates, options: SaemOptions,
              structure: str, callback, done: int) -> dict:
    n, q = pm.data.n_subjects, pm.n_parameters
    chains = sampler.chains
    samples_phi, samples_pred, samples_uy = [], [], []
    for k in range(options.conditional_iterations):
        sampler.sweep(est, adapt=False)
        samples_phi.append(sampler.phi.copy())
        samples_pred.append(sampler.pred.copy())
        samples_uy.append(sampler.uy.copy())
        if callback:
            callback(done + k + 1)
    phi_s = np.array(samples_phi).reshape(-1, chains, n, q).transpose(2, 0, 1, 3).reshape(n, -1, q)
    uy_s = np.array(samples_uy).reshape(-1, chains, n).transpose(2, 0, 1).reshape(n, -1)
    conditional_mean = phi_s.mean(axis=1)
    centred = phi_s - conditional_mean[:, None, :]
    conditional_cov = np.einsum("isj,isk->ijk", centred, centred) / max(phi_s.shape[1] - 1, 1)
    mean_phi = pm.mean_phi(est.fixed_effects)
    inverse = np.linalg.inv(est.omega)
    modes, mode_ok = _conditional_modes(pm, est, phi_s, uy_s, mean_phi, inverse, conditional_cov)
    ofv, ofv_se, subject_ll = _importance_sampling(pm, est, conditional_mean, conditional_cov, mean_phi,
                                                   options.importance_samples, sampler.rng)
    information, covariance, fim_message = _louis_information(pm, est, structure, sampler, samples_phi,
                                                              samples_pred)
    return dict(conditional_mean=conditional_mean, conditional_cov=conditional_cov, modes=modes,
                mode_ok=mode_ok, ofv=ofv, ofv_se=ofv_se, subject_loglik=subject_ll, information=information,
                covariance=covariance, fim_message=fim_message)


def _conditional_modes(pm, est, phi_s, uy_s, mean_phi, inverse, conditional_cov):
    """argmax_φ p(y_i | φ) p(φ) per subject: Nelder–Mead from the best conditional sample."""
    n, q = mean_phi.shape
    modes = np.empty((n, q))
    ok = np.ones(n, dtype=bool)
    for i in range(n):
        design = pm.design([i])

        def objective(phi, i=i, design=design):
            pred, good = design.predict(phi[None, :])
            uy = design.nll(pred, good, est.sigma)[0]
            eta = phi - mean_phi[i]
            return float(uy + 0.5 * eta @ inverse @ eta) if math.isfinite(uy) else 1e300
        eta = phi_s[i] - mean_phi[i]
        total = uy_s[i] + 0.5 * np.einsum("sj,jk,sk->s", eta, inverse, eta)
        x0 = phi_s[i][int(np.argmin(total))]
        sd = np.sqrt(np.clip(np.diag(conditional_cov[i]), 1e-6, 4.0))
        simplex = np.vstack([x0] + [x0 + 0.5 * sd[j] * np.eye(q)[j] for j in range(q)])
        res = minimize(objective, x0, method="Nelder-Mead",
                       options={"initial_simplex": simplex, "xatol": 1e-5, "fatol": 1e-8, "maxfev": 400 * q})
        best = res.x if res.fun <= objective(x0) else x0
        modes[i] = best
        ok[i] = bool(np.isfinite(res.fun) and res.fun < 1e300)
    return modes, ok


def _importance_sampling(pm, est, mean, cov, mean_phi, m, rng):
    """−2 log L = −2 Σ_i log E_q[p(y_i|φ) p(φ) / q(φ)], q = multivariate t (5 d.f.) at the conditional
    mean and covariance. Returns (−2LL, its Monte Carlo SE, log L per subject)."""
    n, q = mean.shape
    sign, logdet = np.linalg.slogdet(est.omega)
    inverse = np.linalg.inv(est.omega)
    chol = np.empty((n, q, q))
    log_det_prop = np.empty(n)
    for i in range(n):
        c = cov[i] + np.eye(q) * max(1e-8, 1e-6 * float(np.trace(cov[i])) / q)
        chol[i] = np.linalg.cholesky(c)
        log_det_prop[i] = 2 * np.sum(np.log(np.diag(chol[i])))
    z = rng.standard_normal((m, n, q))
    w = rng.chisquare(T_DOF, (m, n)) / T_DOF
    eta_prop = np.einsum("ijk,mik->mij", chol, z) / np.sqrt(w)[:, :, None]
    phi = mean[None, :, :] + eta_prop
    rows = np.tile(np.arange(n), m)
    design = pm.design(rows)
    pred, ok = design.predict(phi.reshape(-1, q))
    uy = design.nll(pred, ok, est.sigma).reshape(m, n)
    eta = phi - mean_phi[None]
    log_prior = -0.5 * np.einsum("mij,jk,mik->mi", eta, inverse, eta) - 0.5 * (q * LOG_2PI + logdet)
    # multivariate t density with scale matrix = conditional covariance
    quad = np.einsum("mij,mij->mi", z, z) / w  # = δᵀ C⁻¹ δ
    log_t = (gammaln((T_DOF + q) / 2) - gammaln(T_DOF / 2) - 0.5 * q * math.log(T_DOF * math.pi)
             - 0.5 * log_det_prop[None, :] - 0.5 * (T_DOF + q) * np.log1p(quad / T_DOF))
    log_w = -uy + log_prior - log_t
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    subject_ll = logsumexp(log_w, axis=0) - math.log(m)
    with np.errstate(invalid="ignore", over="ignore"):
        ratio = np.exp(log_w - subject_ll[None, :])
        se_subject = np.std(ratio, axis=0) / math.sqrt(m)   # SE of log p̂_i (delta method)
    ofv = float(-2 * np.sum(subject_ll))
    ofv_se = float(2 * np.sqrt(np.sum(se_subject ** 2)))
    return ofv, ofv_se, subject_ll


def _packed(pm: PopulationModel, est: PopulationEstimates, structure: str) -> np.ndarray:
    q = pm.n_parameters
    omega = np.diag(est.omega) if structure == "diag" else est.omega[np.tril_indices(q)]
    return np.concatenate([est.fixed_effects, omega, est.sigma])


def _unpacked(pm: PopulationModel, theta: np.ndarray, structure: str):
    q = pm.n_parameters
    nb = pm.n_fixed_effects
    fe = theta[:nb]
    if structure == "diag":
        n_om = q
        omega = np.diag(theta[nb:nb + q])
    else:
        n_om = q * (q + 1) // 2
        omega = np.zeros((q, q))
        omega[np.tril_indices(q)] = theta[nb:nb + n_om]
        omega = omega + np.tril(omega, -1).T
    sigma = theta[nb + n_om:]
    return fe, omega, sigma


def _louis_information(pm, est, structure, sampler, samples_phi, samples_pred):
    """Observed Fisher information of the population parameters by Louis' formula on the MCMC samples;
    returns (information, covariance or None, message)."""
    n, q = pm.data.n_subjects, pm.n_parameters
    design = sampler.design
    theta0 = _packed(pm, est, structure)
    nb = pm.n_fixed_effects
    n_sigma = est.sigma.size
    n_theta = theta0.size
    phi = np.array(samples_phi)                 # T × rows × q
    pred = np.array(samples_pred)               # T × observations
    T = phi.shape[0]
    X = pm.design_matrices(sampler.subjects)    # rows × q × nb

    def prior_part(theta):
        fe, omega, _ = _unpacked(pm, theta, structure)
        sign, logdet = np.linalg.slogdet(omega)
        if sign <= 0:
            return np.full(phi.shape[:2], np.nan)
        eta = phi - (X @ fe)[None]
        inv = np.linalg.inv(omega)
        return -0.5 * np.einsum("trj,jk,trk->tr", eta, inv, eta) - 0.5 * (q * LOG_2PI + logdet)

    def residual_part(theta):
        sigma = theta[n_theta - n_sigma:]
        sigmas = pm.sigma_per_observation(sigma, design.slot)
        values = pm.error_model.pointwise(pred, design.y[None], design.censored[None], design.limit[None], sigmas)
        return -np.add.reduceat(values, design.starts[:-1], axis=1)

    n_prior = n_theta - n_sigma
    steps = np.empty(n_theta)
    steps[:nb] = 1e-4 * np.maximum(1.0, np.abs(theta0[:nb]))
    sd = np.sqrt(np.diag(est.omega))
    if structure == "diag":
        steps[nb:n_prior] = 1e-4 * sd ** 2
    else:
        rows, cols = np.tril_indices(q)
        steps[nb:n_prior] = 1e-4 * sd[rows] * sd[cols]
    steps[n_prior:] = 1e-4 * theta0[n_prior:]
    steps = np.maximum(steps, 1e-12)
    grads = np.empty((T, design.n_rows, n_theta))
    for a in range(n_theta):
        e = np.zeros(n_theta)
        e[a] = steps[a]
        part = prior_part if a < n_prior else residual_part
        grads[:, :, a] = (part(theta0 + e) - part(theta0 - e)) / (2 * steps[a])

    # E[Hessian]: the prior part depends on (μ, β, Ω) only, the residual part on σ only
    hessian = np.zeros((n_theta, n_theta))
    for part, block in ((prior_part, range(n_prior)), (residual_part, range(n_prior, n_theta))):
        def mean_total(theta, part=part):
            return float(np.sum(part(theta)) / (T * sampler.chains))
        f0 = mean_total(theta0)
        for a in block:
            ea = np.zeros(n_theta)
            ea[a] = steps[a]
            for b in block:
                if b < a:
                    continue
                if a == b:
                    value = (mean_total(theta0 + ea) - 2 * f0 + mean_total(theta0 - ea)) / steps[a] ** 2
                else:
                    eb = np.zeros(n_theta)
                    eb[b] = steps[b]
                    value = (mean_total(theta0 + ea + eb) - mean_total(theta0 + ea - eb)
                             - mean_total(theta0 - ea + eb) + mean_total(theta0 - ea - eb)) / (4 * steps[a] * steps[b])
                hessian[a, b] = hessian[b, a] = value
    # conditional covariance of the per-subject score, pooled over chains and samples
    g = grads.reshape(T, sampler.chains, n, n_theta).transpose(2, 0, 1, 3).reshape(n, -1, n_theta)
    centred = g - g.mean(axis=1, keepdims=True)
    score_cov = np.einsum("isa,isb->ab", centred, centred) / max(g.shape[1] - 1, 1)
    information = -hessian - score_cov
    information = 0.5 * (information + information.T)
    try:
        eig = np.linalg.eigvalsh(information)
        if not np.all(np.isfinite(eig)) or eig.min() <= 0:
            return information, None, "Fisher information not positive definite: standard errors unavailable"
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        return information, None, "Fisher information singular: standard errors unavailable"
    message = ""
    if eig.max() / eig.min() > 1e12:
        message = "Fisher information near-singular: some parameters are poorly identified"
    return information, covariance, message
