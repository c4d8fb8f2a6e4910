"""Residual error models and the censored (M3) likelihood, vectorised, with analytic derivatives.

Error models (f = model prediction, y = observation, all independent):

* ``proportional``: log y ~ N(log f, σ²), i.e. additive on the log scale (σ ≈ the CV for small σ);
* ``additive``:     y ~ N(f, σ²);
* ``combined``:     y ~ N(f, σa² + (σ f)²)  (``sigma`` is the proportional part, ``sigma_additive`` σa).

An uncensored observation contributes −log p(y) (for ``proportional`` the density of y itself, i.e. it
includes the Jacobian term log y, so values are comparable between error models; that term does not
depend on f or σ). A censored observation — known only to lie below its limit L — contributes Beal's
M3 term −log Φ((g(L) − g(f)) / sd) with g = log for ``proportional`` and the identity otherwise,
computed with `scipy.special.log_ndtr` so that it stays accurate far in either tail (→ 0 when f ≪ L,
≈ u²/2 when f ≫ L).

Failure rules: a prediction that is not finite, or ≤ 0 under ``proportional`` for a measured point, makes
the value +inf (never NaN) with a zero gradient — a solver failure or an impossible parameter set, for the
optimiser to step back from. A censored point predicted ≤ 0 under ``proportional`` (a state killed to zero,
within the solver's tolerance) is certainly below its limit: it contributes 0, the f → 0+ limit. Bad
*data* (an uncensored y ≤ 0 or a censored limit ≤ 0 under ``proportional``, a censored point without a
finite limit, arrays of different lengths) raise `CartkinError`.

Two calling forms exist:

* ``negative_log_likelihood(pred, obs, censored, limits, error)`` with a `ResidualError`, returning
  `NegLogLik(value, d_pred, d_sigma)`, d_sigma with respect to the natural-scale σ's in the order of
  ``error.names``;
* ``negative_log_likelihood(kind, pred, obs, censored, limits, log_sigma)`` (kind a string, log σ's in the
  order of `sigma_names(kind)`), returning ``(value, d_pred, d_log_sigma)`` — the form the optimiser in
  `cartkin.fitting.estimate` uses. ``residuals`` accepts the same two forms (the second without limits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.special import log_ndtr

from ..errors import CartkinError

KINDS = ("proportional", "additive", "combined")
LOG_2PI = math.log(2.0 * math.pi)
_MILLS_ASYMPTOTIC = -1e5  # below this u, φ(u)/Φ(u) = −u to relative precision 1e-10


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise CartkinError(f"unknown residual error model {kind!r}; choose one of {', '.join(KINDS)}")
    return kind


def n_sigmas(kind: str) -> int:
    """How many standard-deviation parameters the error model has (2 for combined, else 1)."""
    return 2 if _check_kind(kind) == "combined" else 1


def sigma_names(kind: str) -> tuple[str, ...]:
    """Names of the error model's σ parameters, in the order every array of σ's uses."""
    return ("sigma_additive", "sigma") if _check_kind(kind) == "combined" else ("sigma",)


@dataclass(frozen=True)
class ResidualError:
    """A residual error model: ``ResidualError("proportional", sigma=0.5)``.

    proportional: ``sigma`` is the SD of log y. additive: ``sigma`` (or ``sigma_additive``) is the SD of y.
    combined: ``sigma`` is the proportional coefficient and ``sigma_additive`` the additive SD.
    """
    kind: str = "proportional"
    sigma: float | None = None
    sigma_additive: float | None = None

    def __post_init__(self):
        _check_kind(self.kind)
        if self.kind == "additive" and self.sigma is None and self.sigma_additive is not None:
            object.__setattr__(self, "sigma", self.sigma_additive)
            object.__setattr__(self, "sigma_additive", None)
        needed = sigma_names(self.kind)
        for name in ("sigma", "sigma_additive"):
            value = getattr(self, name)
            if name in needed:
                if value is None:
                    raise CartkinError(f"{self.kind} residual error needs {name}")
                if not _positive_number(value):
                    raise CartkinError(f"residual error {name} must be a finite number > 0, got {value!r}")
                object.__setattr__(self, name, float(value))
            elif value is not None:
                raise CartkinError(f"{self.kind} residual error takes only {', '.join(needed)} "
                                   f"(got {name}={value!r})")

    @property
    def names(self) -> tuple[str, ...]:
        return sigma_names(self.kind)

    @property
    def values(self) -> np.ndarray:
        """The σ's in the order of `names`."""
        return np.array([getattr(self, n) for n in self.names], dtype=float)

    @property
    def log_values(self) -> np.ndarray:
        return np.log(self.values)

    @classmethod
    def from_values(cls, kind: str, values) -> "ResidualError":
        """The error model whose σ's (in the order of `sigma_names(kind)`) are `values`."""
        values = np.atleast_1d(np.asarray(values, dtype=float))
        names = sigma_names(kind)
        if values.size != len(names):
            raise CartkinError(f"{kind} residual error has {len(names)} sigma(s) ({', '.join(names)}), "
                               f"got {values.size}")
        return cls(kind, **{n: float(v) for n, v in zip(names, values)})

    @classmethod
    def from_log_values(cls, kind: str, log_values) -> "ResidualError":
        return cls.from_values(kind, np.exp(np.asarray(log_values, dtype=float)))

    def sd(self, pred) -> np.ndarray:
        """SD of the residual on its scale (log scale for proportional) at predictions `pred`."""
        f = np.asarray(pred, dtype=float)
        if self.kind == "combined":
            return np.sqrt(self.sigma_additive ** 2 + (self.sigma * f) ** 2)
        return np.full(f.shape, self.sigma)

    def sample(self, pred, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Simulated observations around `pred` (for tests and simulated data sets)."""
        rng = np.random.default_rng(rng)
        f = np.asarray(pred, dtype=float)
        z = rng.standard_normal(f.shape)
        if self.kind == "proportional":
            return f * np.exp(self.sigma * z)
        return f + self.sd(f) * z

    def describe(self) -> str:
        return f"{self.kind} (" + ", ".join(f"{n}={getattr(self, n):.4g}" for n in self.names) + ")"


class NegLogLik(NamedTuple):
    """Total −log L, its gradient with respect to each prediction, and with respect to the σ's."""
    value: float
    d_pred: np.ndarray
    d_sigma: np.ndarray


def negative_log_likelihood(*args, **kwargs):
    """−log L of observations given predictions, and its gradient (see the module docstring).

    ``negative_log_likelihood(pred, obs, censored, limits, error)`` → `NegLogLik(value, d_pred, d_sigma)`;
    ``negative_log_likelihood(kind, pred, obs, censored, limits, log_sigma)`` → (value, d_pred, d_log_sigma).
    """
    if args and isinstance(args[0], str):
        kind, pred, obs, censored, limits, log_sigma = _bind(
            args, kwargs, ("kind", "pred", "obs", "censored", "limits", "log_sigma"))
        kind = _check_kind(kind)
        log_sigma = np.atleast_1d(np.asarray(log_sigma, dtype=float))
        if log_sigma.size != n_sigmas(kind):
            raise CartkinError(f"{kind} residual error needs {n_sigmas(kind)} log sigma(s), got {log_sigma.size}")
        sigmas = np.exp(log_sigma)
        value, d_pred, d_sigma = _nll(kind, sigmas, pred, obs, censored, limits)
        return value, d_pred, d_sigma * sigmas
    pred, obs, censored, limits, error = _bind(args, kwargs, ("pred", "obs", "censored", "limits", "error"))
    if not isinstance(error, ResidualError):
        raise CartkinError(f"error must be a ResidualError, got {type(error).__name__}")
    return NegLogLik(*_nll(error.kind, error.values, pred, obs, censored, limits))


def residuals(*args, **kwargs) -> np.ndarray:
    """Individual weighted residuals IWRES = (g(y) − g(f)) / sd; NaN for censored observations.

    ``residuals(pred, obs, censored, limits, error)`` or ``residuals(kind, pred, obs, censored, log_sigma)``.
    A prediction that cannot be used (≤ 0 under proportional, not finite) gives NaN, and so do σ's that
    are not finite in the second form (e.g. from a failed fit); nothing raises or warns for those.
    """
    if args and isinstance(args[0], str):
        kind, pred, obs, censored, log_sigma = _bind(args, kwargs, ("kind", "pred", "obs", "censored", "log_sigma"))
        kind = _check_kind(kind)
        with np.errstate(over="ignore", invalid="ignore"):
            sigmas = np.exp(np.atleast_1d(np.asarray(log_sigma, dtype=float)))
        if sigmas.size != n_sigmas(kind):
            raise CartkinError(f"{kind} residual error needs {n_sigmas(kind)} log sigma(s), got {sigmas.size}")
    else:
        pred, obs, censored, limits, error = _bind(args, kwargs, ("pred", "obs", "censored", "limits", "error"))
        if not isinstance(error, ResidualError):
            raise CartkinError(f"error must be a ResidualError, got {type(error).__name__}")
        kind, sigmas = error.kind, error.values
    f, y, cens = np.broadcast_arrays(np.asarray(pred, dtype=float), np.asarray(obs, dtype=float),
                                     np.asarray(censored, dtype=bool))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "proportional":
            r = (np.log(y) - np.log(np.where(f > 0, f, np.nan))) / sigmas[0]
        elif kind == "additive":
            r = (y - f) / sigmas[0]
        else:
            r = (y - f) / np.sqrt(sigmas[0] ** 2 + (sigmas[1] * f) ** 2)
    return np.where(cens | ~np.isfinite(r), np.nan, r)


# --- implementation -------------------------------------------------------------------------------

def _bind(args, kwargs, names):
    if len(args) > len(names):
        raise CartkinError(f"expected at most {len(names)} arguments ({', '.join(names)}), got {len(args)}")
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise CartkinError(f"unexpected argument {key!r}; expected {', '.join(names)}")
        if key in values:
            raise CartkinError(f"argument {key!r} given twice")
        values[key] = value
    missing = [n for n in names if n not in values]
    if missing:
        raise CartkinError(f"missing argument(s): {', '.join(missing)}")
    return [values[n] for n in names]


def _positive_number(value) -> bool:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(x) and x > 0


def _arrays(pred, obs, censored, limits):
    f = np.atleast_1d(np.asarray(pred, dtype=float))
    y = np.atleast_1d(np.asarray(obs, dtype=float))
    c = np.atleast_1d(np.asarray(censored))
    lim = np.atleast_1d(np.asarray(limits, dtype=float))
    n = f.shape
    for name, a in (("obs", y), ("censored", c), ("limits", lim)):
        if a.shape != n:
            if a.size == 1:
                continue
            raise CartkinError(f"likelihood: {name} has shape {a.shape}, predictions have shape {n}")
    y, c, lim = (np.broadcast_to(a, n) for a in (y, c, lim))
    if c.dtype != bool:
        if not np.all(np.isin(c, (0, 1))):
            raise CartkinError("likelihood: censored must hold booleans (or 0/1)")
        c = c.astype(bool)
    return f, y, c, lim


def _check_data(kind, y, cens, lim):
    bad = np.flatnonzero(cens & ~np.isfinite(lim))
    if bad.size:
        raise CartkinError(f"likelihood: censored observation {bad[0]} has no finite limit ({lim[bad[0]]})")
    bad = np.flatnonzero(~cens & ~np.isfinite(y))
    if bad.size:
        raise CartkinError(f"likelihood: observation {bad[0]} is not a finite number ({y[bad[0]]})")
    if kind == "proportional":
        bad = np.flatnonzero(~cens & (y <= 0))
        if bad.size:
            raise CartkinError(f"likelihood: proportional (log-scale) error needs observations > 0; observation "
                               f"{bad[0]} is {y[bad[0]]:g} (censor it, or use additive error)")
        bad = np.flatnonzero(cens & (lim <= 0))
        if bad.size:
            raise CartkinError(f"likelihood: proportional (log-scale) error needs censoring limits > 0; "
                               f"observation {bad[0]} has limit {lim[bad[0]]:g}")


def _mills(u):
    """φ(u)/Φ(u), stable for all u (log_ndtr keeps Φ accurate in the far lower tail)."""
    u = np.asarray(u, dtype=float)
    safe = np.maximum(u, _MILLS_ASYMPTOTIC)
    with np.errstate(over="ignore"):  # u → +∞: φ(u)/Φ(u) → 0
        out = np.exp(-0.5 * safe * safe - 0.5 * LOG_2PI - log_ndtr(safe))
    return np.where(u < _MILLS_ASYMPTOTIC, -u, out)


def _nll(kind, sigmas, pred, obs, censored, limits):
    """(value, d value/d pred, d value/d σ) for natural-scale σ's in the order of sigma_names(kind)."""
    f, y, cens, lim = _arrays(pred, obs, censored, limits)
    _check_data(kind, y, cens, lim)
    ns = n_sigmas(kind)
    # a censored point predicted at or below 0 (a state killed to zero, within the solver's tolerance) is
    # certainly below its limit: its M3 term takes its f -> 0+ limit, 0, with zero gradient
    vanished = cens & (f <= 0) if kind == "proportional" else np.zeros(f.shape, bool)
    if not np.all(np.isfinite(f)) or (kind == "proportional" and np.any((f <= 0) & ~vanished)):
        return math.inf, np.zeros(f.shape), np.zeros(ns)
    f = np.where(vanished, 1.0, f)  # any positive value: those terms are zeroed below
    target = np.where(cens, lim, y)  # the limit for censored points, the value otherwise
    if kind == "proportional":
        sigma = float(sigmas[0])
        s = np.full(f.shape, sigma)
        u = (np.log(target) - np.log(f)) / sigma
        du_df = -1.0 / (sigma * f)
        ds_df = np.zeros(f.shape)
        ds_dsig = [np.ones(f.shape)]
        jacobian = np.where(cens, 0.0, np.log(np.where(cens, 1.0, y)))  # log y: density of y, not of log y
    elif kind == "additive":
        sigma = float(sigmas[0])
        s = np.full(f.shape, sigma)
        u = (target - f) / s
        du_df = -1.0 / s
        ds_df = np.zeros(f.shape)
        ds_dsig = [np.ones(f.shape)]
        jacobian = 0.0
    else:
        sa, sp = float(sigmas[0]), float(sigmas[1])
        s = np.sqrt(sa * sa + (sp * f) ** 2)
        u = (target - f) / s
        ds_df = sp * sp * f / s
        du_df = -1.0 / s - u * ds_df / s
        ds_dsig = [sa / s, sp * f * f / s]
        jacobian = 0.0
    # uncensored: u²/2 + log s + log(2π)/2 (+ log y); censored: −log Φ(u)
    value = np.where(cens, -log_ndtr(u), 0.5 * u * u + np.log(s) + 0.5 * LOG_2PI + jacobian)
    value = np.where(vanished, 0.0, value)
    dv_du = np.where(vanished, 0.0, np.where(cens, -_mills(u), u))
    dv_ds_direct = np.where(cens, 0.0, 1.0 / s)  # from the log s term
    dv_ds = dv_du * (-u / s) + dv_ds_direct     # u = (…)/s, so du/ds = −u/s
    d_pred = dv_du * du_df + dv_ds_direct * ds_df  # du_df already holds u's dependence on s(f)
    d_sigma = np.array([float(np.sum(dv_ds * d)) for d in ds_dsig])
    total = float(np.sum(value))
    if not math.isfinite(total):
        return math.inf, np.zeros(f.shape), np.zeros(ns)
    return total, d_pred, d_sigma
