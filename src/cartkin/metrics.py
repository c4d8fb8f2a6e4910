"""Exposure and response metrics from simulated (or observed) time courses.

Every function takes `times` (1-D, days, sorted) and `values` of one subject (1-D) or many
(n_subjects × n_times) and returns a scalar or a per-subject array. Rows with NaN (failed solves) give
NaN, never numbers.
"""
from __future__ import annotations

import numpy as np

from .errors import CartkinError


def _prepare(times, values):
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.ndim != 1 or t.size < 2:
        raise CartkinError("times must be a 1-D array of at least two time points")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0):
        raise CartkinError("times must be finite and sorted")
    single = v.ndim == 1
    v2 = v[None, :] if single else v
    if v2.ndim != 2 or v2.shape[1] != t.size:
        raise CartkinError(f"values must have {t.size} columns (one per time), got shape {v.shape}")
    return t, v2, single


def _finish(result, single):
    result = np.asarray(result)
    return result[0].item() if single else result


def _bad_rows(v):
    return ~np.all(np.isfinite(v), axis=1)


def cmax(times, values):
    """Maximum value."""
    t, v, single = _prepare(times, values)
    out = np.max(np.where(np.isfinite(v), v, -np.inf), axis=1)
    out[_bad_rows(v)] = np.nan
    return _finish(out, single)


def tmax(times, values):
    """First time of the maximum."""
    t, v, single = _prepare(times, values)
    out = t[np.argmax(np.where(np.isfinite(v), v, -np.inf), axis=1)].astype(float)
    out[_bad_rows(v)] = np.nan
    return _finish(out, single)


def _interp_at(t, v, at):
    """Linear interpolation of each row at time `at` (a scalar inside [t0, t_end])."""
    j = np.searchsorted(t, at, side="right") - 1
    j = min(max(j, 0), t.size - 2)
    w = (at - t[j]) / (t[j + 1] - t[j]) if t[j + 1] > t[j] else 0.0
    return v[:, j] + w * (v[:, j + 1] - v[:, j])


def auc(times, values, start: float = 0.0, end: float | None = None):
    """Area under the curve from start to end, linear-up / log-down trapezoid."""
    t, v, single = _prepare(times, values)
    end = t[-1] if end is None else float(end)
    if start < t[0] or end > t[-1] + 1e-9 or end <= start:
        raise CartkinError(f"AUC interval [{start:g}, {end:g}] must lie within the simulated times "
                           f"[{t[0]:g}, {t[-1]:g}]")
    inner = (t > start) & (t < end)
    tt = np.concatenate([[start], t[inner], [end]])
    vv = np.column_stack([_interp_at(t, v, start), v[:, inner], _interp_at(t, v, end)])
    dt = np.diff(tt)
    a, b = vv[:, :-1], vv[:, 1:]
    linear = 0.5 * (a + b) * dt
    with np.errstate(divide="ignore", invalid="ignore"):
        logdown = (a - b) * dt / np.log(a / b)
    use_log = (b < a) & (a > 0) & (b > 0)
    out = np.where(use_log, logdown, linear).sum(axis=1)
    out[_bad_rows(v)] = np.nan
    return _finish(out, single)


def terminal_half_life(times, values, limit: float | None = None, min_points: int = 3):
    """ln 2 / λz from a log-linear fit of the terminal phase after Tmax.

    The number of last points (≥ min_points) is the one with the best adjusted R² (within 1e-4, more
    points preferred), as in WinNonlin's best-fit rule. NaN when the phase does not decline.
    """
    t, v, single = _prepare(times, values)
    out = np.full(v.shape[0], np.nan)
    for i in range(v.shape[0]):
        row = v[i]
        if not np.all(np.isfinite(row)):
            continue
        k = int(np.argmax(row))
        keep = np.arange(t.size) > k
        keep &= row > (limit if limit is not None else 0.0)
        tt, yy = t[keep][::-1], np.log(row[keep])[::-1]  # from the last point backwards
        if tt.size < min_points:
            continue
        n = np.arange(1, tt.size + 1, dtype=float)
        sx, sy = np.cumsum(tt), np.cumsum(yy)
        sxx, sxy, syy = np.cumsum(tt * tt), np.cumsum(tt * yy), np.cumsum(yy * yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            vx = sxx - sx * sx / n
            vy = syy - sy * sy / n
            cxy = sxy - sx * sy / n
            slope = cxy / vx
            r2 = np.where(vy > 0, cxy * cxy / (vx * vy), 1.0)
            adj = 1 - (1 - r2) * (n - 1) / (n - 2)
        usable = (n >= min_points) & (slope < 0) & np.isfinite(adj)
        if not usable.any():
            continue
        best_adj = adj[usable].max()
        choice = np.flatnonzero(usable & (adj >= best_adj - 1e-4)).max()  # prefer more points
        best = np.log(2) / -slope[choice]
        out[i] = best
    return _finish(out, single)


def tlast(times, values, limit: float):
    """Last time with a value above `limit` (NaN if never above)."""
    t, v, single = _prepare(times, values)
    above = v > limit
    idx = t.size - 1 - np.argmax(above[:, ::-1], axis=1)
    out = np.where(above.any(axis=1), t[idx], np.nan)
    out[_bad_rows(v)] = np.nan
    return _finish(out, single)


def duration_below(times, values, threshold):
    """Days spent below `threshold` (scalar or one per subject), crossings located by linear interpolation."""
    t, v, single = _prepare(times, values)
    thr = np.broadcast_to(np.asarray(threshold, dtype=float).reshape(-1, 1) if np.ndim(threshold) else
                          np.asarray(threshold, dtype=float), (v.shape[0], 1))
    d = v - thr  # below where d < 0
    a, b = d[:, :-1], d[:, 1:]
    dt = np.diff(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac_cross = np.where(a != b, a / (a - b), 0.0)
    both = (a < 0) & (b < 0)
    down = (a >= 0) & (b < 0)  # enters below within the interval
    up = (a < 0) & (b >= 0)
    part = np.where(both, dt, 0.0)
    part += np.where(down, dt * (1 - frac_cross), 0.0)
    part += np.where(up, dt * frac_cross, 0.0)
    out = part.sum(axis=1)
    out[_bad_rows(v)] = np.nan
    return _finish(out, single)


def _value_at(t, v, day, name):
    if not t[0] <= day <= t[-1]:
        raise CartkinError(f"{name}: day {day:g} is outside the simulated times [{t[0]:g}, {t[-1]:g}]")
    return _interp_at(t, v, day)


def response(times, blast_pct, day: float = 28.0, threshold: float = 5.0):
    """Response on `day`: blast % below threshold (1.0 / 0.0; NaN for failed rows)."""
    t, v, single = _prepare(times, blast_pct)
    out = (_value_at(t, v, day, "response") < threshold).astype(float)
    out[_bad_rows(v)] = np.nan
    return _finish(out, single)


def mrd_negative(times, blast_pct, day: float = 28.0, threshold: float = 0.01):
    """MRD negativity on `day`: blast % below 0.01% by default."""
    return response(times, blast_pct, day=day, threshold=threshold)


def relapse_day(times, blast_pct, threshold: float = 5.0, response_day: float = 28.0):
    """First day after a day-`response_day` response when blast % climbs back to `threshold`.

    NaN for non-responders and for responders who do not relapse within the horizon.
    """
    t, v, single = _prepare(times, blast_pct)
    responded = _value_at(t, v, response_day, "relapse_day") < threshold
    out = np.full(v.shape[0], np.nan)
    after = t >= response_day
    ta, va = t[after], v[:, after]
    for i in np.flatnonzero(responded & ~_bad_rows(v)):
        hits = np.flatnonzero(va[i] >= threshold)
        if hits.size == 0:
            continue
        j = hits[0]
        if j == 0:
            out[i] = ta[0]
            continue
        a, b = va[i, j - 1], va[i, j]
        out[i] = ta[j - 1] + (threshold - a) / (b - a) * (ta[j] - ta[j - 1])
    return _finish(out, single)


def relapse_free(times, blast_pct, at_day: float, threshold: float = 5.0, response_day: float = 28.0):
    """Responded on `response_day` and no relapse by `at_day` (1.0 / 0.0; NaN for failed rows)."""
    t, v, single = _prepare(times, blast_pct)
    if not response_day <= at_day <= t[-1]:
        raise CartkinError(f"relapse_free: day {at_day:g} must lie between the response day "
                           f"{response_day:g} and the horizon {t[-1]:g}")
    responded = _value_at(t, v, response_day, "relapse_free") < threshold
    day = np.atleast_1d(relapse_day(t, v, threshold, response_day))
    out = (responded & ~(day <= at_day)).astype(float)
    out[_bad_rows(v)] = np.nan
    return _finish(out, single)


def exposure_summary(times, values, limit: float) -> dict:
    """Cmax, Tmax, AUC0–28, AUC0–84 (NaN beyond the horizon), terminal half-life and Tlast."""
    t, v, single = _prepare(times, values)
    out = {"cmax": cmax(t, v), "tmax": tmax(t, v),
           "auc_0_28": auc(t, v, 0.0, 28.0) if t[-1] >= 28 else np.full(v.shape[0], np.nan),
           "auc_0_84": auc(t, v, 0.0, 84.0) if t[-1] >= 84 else np.full(v.shape[0], np.nan),
           "half_life": terminal_half_life(t, v, limit=limit), "tlast": tlast(t, v, limit)}
    return {k: (np.asarray(x)[0].item() if single else np.asarray(x)) for k, x in out.items()}
