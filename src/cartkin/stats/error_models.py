"""Residual error models, one class each: likelihood with the censored (M3) term and its gradient,
weighted residuals, noise simulation and the SAEM maximisation step for the model's σ's.

Names follow Monolix (f = prediction, y = observation, ε ~ N(0, 1), all independent):

* ``proportional``: log y = log f + σ ε, i.e. additive on the log scale (σ ≈ the CV for small σ);
* ``additive``:     y = f + σ ε;
* ``combined1``:    y = f + (a + b |f|) ε;
* ``combined2``:    y = f + √(a² + b² f²) ε  (``combined`` is accepted as another name for it).

σ's are always given in the order of the model's `components` (a then b for the combined models), as an
array of shape (n_sigmas,) or (n_sigmas, n) for one σ set per observation. Their parameter names are
``sigma_<observable>`` for one-σ models and ``sigma_add_<observable>``, ``sigma_prop_<observable>``
otherwise.

An uncensored observation contributes −log p(y) (for ``proportional`` the density of y itself, i.e. it
includes the Jacobian term log y, so values are comparable between error models; that term does not
depend on f or σ). A censored observation — known only to lie below its limit L — contributes Beal's
M3 term −log Φ((g(L) − g(f)) / sd) with g = log for ``proportional`` and the identity otherwise,
computed with `scipy.special.log_ndtr` so that it stays accurate far in either tail (→ 0 when f ≪ L,
≈ u²/2 when f ≫ L).

Failure rules: a prediction that is not finite, or ≤ 0 under ``proportional`` for a measured point, makes
that observation's term +inf (never NaN), and a total of +inf has a zero gradient — a solver failure or an
impossible parameter set, for an optimiser or sampler to step back from. A censored point predicted ≤ 0
under ``proportional`` (a state killed to zero, within the solver's tolerance) is certainly below its
limit: it contributes 0, the f → 0+ limit. Under ``proportional`` the derivative in f uses 1/max(f, 1e-290)
(a state killed far below its data can underflow to 5e-324, whose reciprocal overflows). Bad *data* (an uncensored y ≤ 0 or a censored limit ≤ 0 under
``proportional``, a censored point without a finite limit, arrays of different lengths) raise
`CartkinError` in `ErrorModel.negative_log_likelihood`.

Adding an error model is one subclass of `ErrorModel` (its name, components and SD with derivatives) and
one line in `ERROR_MODELS`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr

from ..errors import CartkinError

LOG_2PI = math.log(2.0 * math.pi)
_MILLS_ASYMPTOTIC = -1e5  # below this u, φ(u)/Φ(u) = −u to relative precision 1e-10
MIN_VARIANCE = 1e-12      # floor of σ² in the closed-form SAEM step
TINY_PREDICTION = 1e-290  # log-scale gradients take 1/max(f, this): a killed state can underflow to 5e-324


class NegLogLik(NamedTuple):
    """Total −log L, its gradient with respect to each prediction, and with respect to the log σ's."""
    value: float
    d_pred: np.ndarray
    d_log_sigma: np.ndarray


class ErrorModel(ABC):
    """A residual error model. Subclasses set `name`, `components` and `log_scale`, and define `sd` and
    `sd_derivatives`; everything else follows from those."""

    name: ClassVar[str]
    components: ClassVar[tuple[str, ...]]   # σ's, in order: ("",) for one σ, ("add", "prop") for a and b
    log_scale: ClassVar[bool] = False       # residuals on the log scale (needs observations > 0)
    bounds: ClassVar[tuple[tuple[float, float], ...] | None] = None  # log σ bounds of the numeric SAEM step

    # --- what a subclass defines ---------------------------------------------------------------------
    @abstractmethod
    def sd(self, pred, sigmas) -> np.ndarray:
        """SD of the residual on its scale (log scale for proportional) at predictions `pred`."""

    @abstractmethod
    def sd_derivatives(self, pred, sigmas) -> tuple[np.ndarray, list[np.ndarray]]:
        """(d sd / d pred, [d sd / d σ_k for each component])."""

    def variance(self, pred, sigmas) -> np.ndarray:
        """sd², the quantity the numeric SAEM step works with."""
        return self.sd(pred, sigmas) ** 2

    def variance_gradient(self, weights, pred, sigmas) -> np.ndarray:
        """d/d log σ_k of Σ weights · sd², for each component (the numeric SAEM step's chain rule)."""
        s = self.sd(pred, sigmas)
        _, ds = self.sd_derivatives(pred, sigmas)
        return np.array([np.sum(weights * 2.0 * s * d * sk) for d, sk in zip(ds, self._split(sigmas))])

    def initial_sigmas(self, scale: float) -> np.ndarray:
        """Start values of the σ's for data whose typical magnitude is `scale`."""
        return np.array([0.1 * scale, 0.5])

    # --- names ---------------------------------------------------------------------------------------
    @property
    def n_sigmas(self) -> int:
        return len(self.components)

    def sigma_names(self, observables: str | Sequence[str]) -> tuple[str, ...]:
        """Residual parameter names, observable by observable: sigma_nTA, or sigma_add_nTA, sigma_prop_nTA."""
        if isinstance(observables, str):
            observables = (observables,)
        return tuple(f"sigma_{c}_{o}" if c else f"sigma_{o}" for o in observables for c in self.components)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    # --- likelihood ----------------------------------------------------------------------------------
    def transform(self, x):
        """g: the scale on which residuals are normal (log for proportional)."""
        return np.log(x) if self.log_scale else np.asarray(x, dtype=float)

    def pointwise(self, pred, obs, censored, limits, sigmas) -> np.ndarray:
        """−log p per observation (+inf where the prediction cannot be used); shapes broadcast."""
        return self._terms(pred, obs, censored, limits, sigmas, gradient=False)

    def pointwise_gradient(self, pred, obs, censored, limits, sigmas):
        """(−log p per observation, its derivative in the prediction, in the log σ's (n_sigmas × …))."""
        return self._terms(pred, obs, censored, limits, sigmas, gradient=True)

    def negative_log_likelihood(self, pred, obs, censored, limits, sigmas) -> NegLogLik:
        """Total −log L of the observations, after checking the data; `NegLogLik(value, d_pred, d_log_sigma)`.

        `sigmas` (natural scale) has shape (n_sigmas,) or (n_sigmas, n); d_log_sigma has the same shape.
        A total of +inf comes with zero gradients."""
        f, y, cens, lim = _arrays(pred, obs, censored, limits)
        sig = self._check_sigmas(sigmas)
        self.check_data(y, cens, lim)
        values, d_pred, d_log_sigma = self.pointwise_gradient(f, y, cens, lim, sig)
        total = float(np.sum(values))
        if not math.isfinite(total):
            return NegLogLik(math.inf, np.zeros(f.shape), np.zeros(sig.shape))
        if sig.ndim == 1:
            d_log_sigma = d_log_sigma.reshape(self.n_sigmas, -1).sum(axis=1)
        return NegLogLik(total, d_pred, d_log_sigma)

    def check_data(self, obs, censored, limits) -> None:
        """Raise `CartkinError` for observations this error model cannot use."""
        y, cens, lim = obs, censored, limits
        bad = np.flatnonzero(cens & ~np.isfinite(lim))
        if bad.size:
            raise CartkinError(f"likelihood: censored observation {bad[0]} has no finite limit ({lim[bad[0]]})")
        bad = np.flatnonzero(~cens & ~np.isfinite(y))
        if bad.size:
            raise CartkinError(f"likelihood: observation {bad[0]} is not a finite number ({y[bad[0]]})")
        if self.log_scale:
            bad = np.flatnonzero(~cens & (y <= 0))
            if bad.size:
                raise CartkinError(f"likelihood: {self.name} (log-scale) error needs observations > 0; observation "
                                   f"{bad[0]} is {y[bad[0]]:g} (censor it, or use additive error)")
            bad = np.flatnonzero(cens & (lim <= 0))
            if bad.size:
                raise CartkinError(f"likelihood: {self.name} (log-scale) error needs censoring limits > 0; "
                                   f"observation {bad[0]} has limit {lim[bad[0]]:g}")

    # --- residuals and simulation --------------------------------------------------------------------
    def transformed_residuals(self, pred, obs) -> np.ndarray:
        """g(y) − g(f): log scale for proportional, natural scale otherwise (NaN/inf left as they come)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.transform(obs) - self.transform(pred)

    def residuals(self, pred, obs, censored, sigmas) -> np.ndarray:
        """Individual weighted residuals IWRES = (g(y) − g(f)) / sd; NaN for censored observations and
        where the prediction or the σ's cannot be used (nothing raises or warns for those)."""
        f = np.asarray(pred, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            r = self.transformed_residuals(f, obs) / self.sd(f, self._split(sigmas))
        return np.where(np.asarray(censored, dtype=bool) | ~np.isfinite(r), np.nan, r)

    def sample(self, pred, sigmas, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Simulated observations around `pred` (one standard normal draw per prediction, in order)."""
        rng = np.random.default_rng(rng)
        f = np.asarray(pred, dtype=float)
        z = rng.standard_normal(f.shape)
        sig = self._split(sigmas)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.log_scale:
                return f * np.exp(self.sd(f, sig) * z)
            return f + self.sd(f, sig) * z

    # --- SAEM maximisation step ----------------------------------------------------------------------
    def statistics(self, pred, residuals, sigmas) -> np.ndarray:
        """What SAEM averages over iterations for one observable, from complete-data residuals g(y) − g(f)
        (censored ones imputed): here the σ's maximising the complete-data likelihood, found numerically
        from the current `sigmas` (kept where no observation is usable)."""
        f, r = np.asarray(pred, dtype=float), np.asarray(residuals, dtype=float)
        sel = np.isfinite(f) & np.isfinite(r)
        start = np.asarray(sigmas, dtype=float)
        if not np.any(sel):
            return start.copy()
        f, r = f[sel], r[sel]

        def objective(x):
            sig = np.exp(x)
            v = self.variance(f, sig)
            value = 0.5 * np.sum(np.log(v) + r * r / v)
            dv = 0.5 * (1.0 / v - r * r / (v * v))
            return value, self.variance_gradient(dv, f, sig)
        result = minimize(objective, np.log(start), jac=True, method="L-BFGS-B",
                          bounds=None if self.bounds is None else list(self.bounds))
        return np.exp(result.x)

    def sigmas_from_statistics(self, statistics) -> np.ndarray:
        """The σ's from (averaged) `statistics`."""
        return np.asarray(statistics, dtype=float)

    # --- implementation ------------------------------------------------------------------------------
    def _split(self, sigmas) -> list:
        s = np.asarray(sigmas, dtype=float)
        return [s[k] for k in range(self.n_sigmas)]

    def _check_sigmas(self, sigmas) -> np.ndarray:
        s = np.asarray(sigmas, dtype=float)
        if s.ndim == 0 or s.shape[0] != self.n_sigmas or s.ndim > 2:
            raise CartkinError(f"{self.name} residual error has {self.n_sigmas} sigma(s) "
                               f"({', '.join(self.sigma_names('y'))}), got an array of shape {s.shape}")
        return s

    def _terms(self, pred, obs, censored, limits, sigmas, gradient):
        f = np.asarray(pred, dtype=float)
        y = np.asarray(obs, dtype=float)
        cens = np.asarray(censored, dtype=bool)
        lim = np.asarray(limits, dtype=float)
        sig = self._split(sigmas)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            usable = np.isfinite(f)
            if self.log_scale:
                # a censored point predicted at or below 0 is certainly below its limit: its M3 term takes
                # its f -> 0+ limit, 0, with zero gradient
                vanished = cens & usable & (f <= 0)
                usable = usable & ((f > 0) | vanished)
                f = np.where(vanished, 1.0, f)  # any positive value: those terms are zeroed below
            else:
                vanished = np.zeros(np.broadcast(f, cens).shape, dtype=bool)
            target = np.where(cens, lim, y)  # the limit for censored points, the value otherwise
            s = self.sd(f, sig)
            u = (self.transform(target) - self.transform(f)) / s
            if self.log_scale:  # log y: the density of y, not of log y
                jacobian = np.where(cens, 0.0, np.log(np.where(cens, 1.0, y)))
            else:
                jacobian = 0.0
            # uncensored: u²/2 + log s + log(2π)/2 (+ log y); censored: −log Φ(u)
            value = np.where(cens, -log_ndtr(u), 0.5 * u * u + np.log(s) + 0.5 * LOG_2PI + jacobian)
        value = np.where(vanished, 0.0, value)
        value = np.where(usable & ~np.isnan(value), value, np.inf)
        if not gradient:
            return value
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ds_df, ds_dsig = self.sd_derivatives(f, sig)
            # 1/f of a prediction underflowed to (near) zero would overflow: floored at TINY_PREDICTION
            dg_df = 1.0 / np.maximum(f, TINY_PREDICTION) if self.log_scale else 1.0
            dv_du = np.where(vanished, 0.0, np.where(cens, -_mills(u), u))
            dv_ds_direct = np.where(cens, 0.0, 1.0 / s)  # from the log s term
            dv_ds = dv_du * (-u / s) + dv_ds_direct      # u = (…)/s, so du/ds = −u/s
            du_df = -dg_df / s - u * ds_df / s
            d_pred = dv_du * du_df + dv_ds_direct * ds_df
            d_log_sigma = np.array([np.broadcast_to(dv_ds * d * sk, value.shape) for d, sk in zip(ds_dsig, sig)])
        finite = np.isfinite(value)
        return value, np.where(finite, d_pred, 0.0), np.where(finite, d_log_sigma, 0.0)


class _OneSigma(ErrorModel):
    """One σ, the SD of the residual on its scale; SAEM's σ² is the average mean squared residual."""
    components = ("",)

    def sd(self, pred, sigmas):
        return np.zeros(np.shape(pred)) + self._split(sigmas)[0]

    def sd_derivatives(self, pred, sigmas):
        zero = np.zeros(np.shape(pred))
        return zero, [zero + 1.0]

    def statistics(self, pred, residuals, sigmas):
        """The mean squared residual (closed form: σ² is its SAEM average)."""
        r = np.asarray(residuals, dtype=float)
        return np.array([np.mean(r * r)]) if r.size else np.asarray(sigmas, dtype=float) ** 2

    def sigmas_from_statistics(self, statistics):
        return np.sqrt(np.maximum(np.asarray(statistics, dtype=float), MIN_VARIANCE))


class ProportionalError(_OneSigma):
    """log y = log f + σ ε: additive on the log scale."""
    name = "proportional"
    log_scale = True

    def initial_sigmas(self, scale):
        return np.array([1.0])


class AdditiveError(_OneSigma):
    """y = f + σ ε."""
    name = "additive"

    def initial_sigmas(self, scale):
        return np.array([scale])


class Combined1Error(ErrorModel):
    """y = f + (a + b |f|) ε."""
    name = "combined1"
    components = ("add", "prop")
    bounds = ((-20.0, 10.0), (-20.0, 5.0))

    def sd(self, pred, sigmas):
        a, b = self._split(sigmas)
        return a + b * np.abs(pred)

    def sd_derivatives(self, pred, sigmas):
        a, b = self._split(sigmas)
        f = np.asarray(pred, dtype=float)
        return b * np.sign(f), [np.ones(f.shape), np.abs(f)]


class Combined2Error(ErrorModel):
    """y = f + √(a² + b² f²) ε (Monolix combined2; ``combined`` in earlier cartkin versions)."""
    name = "combined2"
    components = ("add", "prop")
    bounds = ((-20.0, 10.0), (-20.0, 5.0))

    def variance(self, pred, sigmas):
        a, b = self._split(sigmas)
        return a * a + (b * pred) ** 2

    def sd(self, pred, sigmas):
        return np.sqrt(self.variance(pred, sigmas))

    def sd_derivatives(self, pred, sigmas):
        a, b = self._split(sigmas)
        s = self.sd(pred, sigmas)
        return b * b * pred / s, [a / s, b * pred * pred / s]

    def variance_gradient(self, weights, pred, sigmas):
        a, b = self._split(sigmas)
        return np.array([np.sum(weights * 2 * a * a), np.sum(weights * 2 * (b * pred) ** 2)])


ERROR_MODELS: dict[str, type[ErrorModel]] = {
    "proportional": ProportionalError,
    "additive": AdditiveError,
    "combined1": Combined1Error,
    "combined2": Combined2Error,
}
ALIASES = {"combined": "combined2"}  # names kept for existing fit.json files and command lines


def error_model(name: str | ErrorModel) -> ErrorModel:
    """The error model called `name` (an `ErrorModel` is returned as it is)."""
    if isinstance(name, ErrorModel):
        return name
    key = ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in ERROR_MODELS:
        raise CartkinError(f"unknown residual error model {name!r}; choose one of {', '.join(error_model_names())}")
    return ERROR_MODELS[key]()


def error_model_names() -> tuple[str, ...]:
    """Every accepted name: the models, then the aliases."""
    return tuple(ERROR_MODELS) + tuple(ALIASES)


# --- helpers ------------------------------------------------------------------------------------------

def _arrays(pred, obs, censored, limits):
    f = np.atleast_1d(np.asarray(pred, dtype=float))
    y = np.atleast_1d(np.asarray(obs, dtype=float))
    c = np.atleast_1d(np.asarray(censored))
    lim = np.atleast_1d(np.asarray(limits, dtype=float))
    n = f.shape
    for name, a in (("obs", y), ("censored", c), ("limits", lim)):
        if a.shape != n and a.size != 1:
            raise CartkinError(f"likelihood: {name} has shape {a.shape}, predictions have shape {n}")
    y, c, lim = (np.broadcast_to(a, n) for a in (y, c, lim))
    if c.dtype != bool:
        if not np.all(np.isin(c, (0, 1))):
            raise CartkinError("likelihood: censored must hold booleans (or 0/1)")
        c = c.astype(bool)
    return f, y, c, lim


def _mills(u):
    """φ(u)/Φ(u), stable for all u (log_ndtr keeps Φ accurate in the far lower tail)."""
    u = np.asarray(u, dtype=float)
    safe = np.maximum(u, _MILLS_ASYMPTOTIC)
    with np.errstate(over="ignore"):  # u → +∞: φ(u)/Φ(u) → 0
        out = np.exp(-0.5 * safe * safe - 0.5 * LOG_2PI - log_ndtr(safe))
    return np.where(u < _MILLS_ASYMPTOTIC, -u, out)
