"""Residual error models and the censored (M3) likelihood, with analytic derivatives.

proportional: log DV ~ N(log f, σ²) (additive on the log scale); additive: DV ~ N(f, σ²);
combined: DV ~ N(f, σa² + (σp f)²). A censored observation (below its limit L) contributes
−log Φ((g(L) − g(f))/sd): the probability of lying below the limit (Beal's M3).
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

KINDS = ("proportional", "additive", "combined")
LOG_2PI = float(np.log(2 * np.pi))


def n_sigmas(kind: str) -> int:
    return 2 if kind == "combined" else 1


def negative_log_likelihood(kind: str, pred, obs, censored, limits, log_sigma):
    """(value, d value/d pred, d value/d log_sigma) for one observable's data.

    log_sigma: [log σ] or [log σa, log σp] for combined. pred <= 0 with a log-scale model gives inf.
    """
    f = np.asarray(pred, dtype=float)
    y = np.asarray(obs, dtype=float)
    cens = np.asarray(censored, dtype=bool)
    lim = np.asarray(limits, dtype=float)
    if kind == "proportional":
        if np.any(f <= 0) or not np.all(np.isfinite(f)):
            return np.inf, np.zeros_like(f), np.zeros(1)
        sigma = np.exp(log_sigma[0])
        target = np.where(cens, np.log(np.where(cens, lim, 1.0)), np.log(np.where(cens, 1.0, y)))
        u = (target - np.log(f)) / sigma
        du_df = -1.0 / (sigma * f)
        ds = [np.full_like(f, 1.0)]  # d log s / d log σ, with s = σ
        s = np.full_like(f, sigma)
    else:
        if not np.all(np.isfinite(f)):
            return np.inf, np.zeros_like(f), np.zeros(n_sigmas(kind))
        if kind == "additive":
            sa = np.exp(log_sigma[0])
            s = np.full_like(f, sa)
            ds_df = np.zeros_like(f)
            ds = [np.ones_like(f)]
        else:
            sa, sp = np.exp(log_sigma[0]), np.exp(log_sigma[1])
            s = np.sqrt(sa ** 2 + (sp * f) ** 2)
            ds_df = sp ** 2 * f / s
            ds = [sa ** 2 / s ** 2, (sp * f) ** 2 / s ** 2]  # d log s / d log σa, σp
        target = np.where(cens, lim, y)
        u = (target - f) / s
        du_df = -1.0 / s - u * ds_df / s
    dlogs_df = (ds_df / s) if kind != "proportional" else np.zeros_like(f)
    value = np.where(cens, 0.0, 0.5 * u ** 2 + np.log(s) + 0.5 * LOG_2PI)
    if kind == "proportional":
        value = value + np.where(cens, 0.0, np.log(np.where(cens, 1.0, y)))  # density of DV, not log DV
    logcdf = log_ndtr(u)
    value = np.where(cens, -logcdf, value)
    mills = np.exp(-0.5 * u ** 2 - 0.5 * LOG_2PI - logcdf)  # φ(u) / Φ(u)
    dv_du = np.where(cens, -mills, u)
    d_pred = dv_du * du_df + np.where(cens, 0.0, dlogs_df)
    d_sigma = np.array([np.sum(dv_du * (-u * d) + np.where(cens, 0.0, d)) for d in ds])
    return float(np.sum(value)), d_pred, d_sigma


def residuals(kind: str, pred, obs, censored, log_sigma) -> np.ndarray:
    """Individual weighted residuals (IWRES); NaN for censored observations."""
    f = np.asarray(pred, dtype=float)
    y = np.asarray(obs, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "proportional":
            r = (np.log(y) - np.log(f)) / np.exp(log_sigma[0])
        elif kind == "additive":
            r = (y - f) / np.exp(log_sigma[0])
        else:
            r = (y - f) / np.sqrt(np.exp(2 * log_sigma[0]) + (np.exp(log_sigma[1]) * f) ** 2)
    return np.where(np.asarray(censored, bool), np.nan, r)
