"""Exposure and response metrics from simulated (or observed) time courses.

Every function takes `times` (1-D, days, non-decreasing; a repeated time marks a jump such as a dose)
and `values` of one subject (1-D) or many (n_subjects × n_times). One subject gives a scalar, many give
one entry per subject. A row containing NaN or infinity is a failed subject: its result is NaN, never a
number. Yes/no outcomes (`response`, `mrd_negative`, `relapse_free`) are a bool for one subject and a
float array of 1.0 / 0.0 / NaN for many, so that failed subjects stay distinguishable from "no".
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from cartkin.errors import CartkinError

__all__ = ["cmax", "tmax", "auc", "terminal_half_life", "tlast", "duration_below", "response",
           "mrd_negative", "relapse_day", "relapse_free", "relapse_type", "aplasia_at", "crs_grade",
           "CRS_IL6_THRESHOLDS", "exposure_summary"]

_LN2 = float(np.log(2.0))
_ADJUSTED_R2_TOLERANCE = 1e-4  # WinNonlin best-fit rule: within this of the best, prefer more points
_MIN_TERMINAL_POINTS = 3


# ---------------------------------------------------------------------------------------------------
# input handling

def _prepare(times, values) -> tuple[np.ndarray, np.ndarray, bool]:
    """Checked float copies: times (1-D), values as 2-D rows, and whether the input was one subject."""
    try:
        t = np.asarray(times, dtype=float)
    except (TypeError, ValueError):
        raise CartkinError("times must be numbers") from None
    try:
        v = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise CartkinError("values must be numbers") from None
    if t.ndim != 1 or t.size == 0:
        raise CartkinError(f"times must be a non-empty 1-D array, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise CartkinError("times contain NaN or infinite values")
    if np.any(np.diff(t) < 0):
        raise CartkinError("times must be sorted in increasing order")
    if v.ndim not in (1, 2):
        raise CartkinError(f"values must be 1-D (one subject) or 2-D (subjects × times), got shape {v.shape}")
    single = v.ndim == 1
    rows = v[None, :] if single else v
    if rows.shape[1] != t.size:
        raise CartkinError(f"values must have {t.size} columns (one per time), got shape {v.shape}")
    return t, rows, single


def _failed(rows: np.ndarray) -> np.ndarray:
    """Rows that are failed subjects (any NaN or infinite value)."""
    return ~np.all(np.isfinite(rows), axis=1)


def _number(x, name: str) -> float:
    """A finite scalar argument, or a one-line error naming it."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise CartkinError(f"{name} must be a number, got {x!r}") from None
    if not np.isfinite(value):
        raise CartkinError(f"{name} must be finite, got {value}")
    return value


def _snap(t: np.ndarray, day: float) -> float:
    """`day` moved onto the first/last time when it is off by rounding only."""
    tol = 1e-9 * max(1.0, abs(t[0]), abs(t[-1]))
    if t[-1] < day <= t[-1] + tol:
        return float(t[-1])
    if t[0] - tol <= day < t[0]:
        return float(t[0])
    return day


def _day_inside(t: np.ndarray, day, what: str) -> float:
    """A checked day inside the simulated times."""
    day = _snap(t, _number(day, f"{what} day"))
    if not t[0] <= day <= t[-1]:
        raise CartkinError(f"{what}: day {day:g} is outside the simulated times [{t[0]:g}, {t[-1]:g}]")
    return day


def _per_subject(value, n: int, name: str) -> np.ndarray:
    """A scalar or one value per subject, as n values (a CartkinError naming `name` otherwise)."""
    try:
        v = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise CartkinError(f"{name} must be a number or one number per subject") from None
    if v.ndim > 1 or (v.ndim == 1 and v.size != n):
        raise CartkinError(f"{name} must be a scalar or have one value per subject ({n}), got shape {v.shape}")
    return np.broadcast_to(v, (n,))


def _scalar(out: np.ndarray, single: bool):
    """A Python float for one subject, the array for many."""
    return float(out[0]) if single else out


def _yes_no(flag: np.ndarray, failed: np.ndarray, single: bool):
    """bool for one subject (NaN if it failed); 1.0 / 0.0 / NaN per subject for many."""
    out = flag.astype(float)
    out[failed] = np.nan
    if single:
        return float("nan") if failed[0] else bool(flag[0])
    return out


# ---------------------------------------------------------------------------------------------------
# interpolation and log-down pieces

def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ln(b / a) for positive a, b, accurate also when b is close to a."""
    with np.errstate(divide="ignore", invalid="ignore"):
        near = -0.5 * a < b - a
        return np.where(near, np.log1p((b - a) / a), np.log(b) - np.log(a))


def _interpolate(t: np.ndarray, rows: np.ndarray, at: float, right: bool, log_down: bool) -> np.ndarray:
    """Each row's value at time `at` inside [t0, t_end].

    At a repeated time, `right` picks the value after the jump (else the one before). Between samples
    the interpolation is linear, or log-linear on a decreasing segment with both ends > 0 when
    `log_down` (consistent with the linear-up/log-down AUC).
    """
    k = int(np.searchsorted(t, at, side="left"))
    if k < t.size and t[k] == at:
        j = int(np.searchsorted(t, at, side="right")) - 1 if right else k
        return rows[:, j].copy()
    a, b = rows[:, k - 1], rows[:, k]
    w = (at - t[k - 1]) / (t[k] - t[k - 1])
    linear = a + w * (b - a)
    if not log_down:
        return linear
    use_log = (b < a) & (a > 0) & (b > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        logged = a * np.exp(w * _log_ratio(a, b))
    return np.where(use_log, logged, linear)


def _trapezoids(dt: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Linear-up/log-down trapezoid areas of segments from a to b lasting dt."""
    linear = 0.5 * (a + b) * dt
    use_log = (b < a) & (a > 0) & (b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = (b - a) * dt / _log_ratio(a, b)
    return np.where(use_log, logged, linear)


# ---------------------------------------------------------------------------------------------------
# exposure

def cmax(times, values) -> float | np.ndarray:
    """Maximum value (Cmax): the peak expansion of CAR T cells, or the peak of a cytokine."""
    t, rows, single = _prepare(times, values)
    out = np.full(rows.shape[0], np.nan)
    ok = ~_failed(rows)
    out[ok] = rows[ok].max(axis=1)
    return _scalar(out, single)


def tmax(times, values) -> float | np.ndarray:
    """Time of the maximum (Tmax); the first such time when the peak value repeats."""
    t, rows, single = _prepare(times, values)
    out = np.full(rows.shape[0], np.nan)
    ok = ~_failed(rows)
    out[ok] = t[np.argmax(rows[ok], axis=1)]
    return _scalar(out, single)


def auc(times, values, start: float = 0.0, end: float | None = None) -> float | np.ndarray:
    """Area under the curve from `start` to `end` (default: the last time), linear-up/log-down trapezoid.

    A segment uses the log trapezoid when the value decreases and both ends are > 0 (exact for an
    exponential decline), otherwise the linear one. Values at `start`/`end` between samples are
    interpolated the same way. AUC0–28 is `auc(t, y, 0, 28)`, AUC0–84 is `auc(t, y, 0, 84)`.
    """
    t, rows, single = _prepare(times, values)
    start = _snap(t, _number(start, "AUC start"))
    end = float(t[-1]) if end is None else _snap(t, _number(end, "AUC end"))
    if start < t[0] or end > t[-1]:
        raise CartkinError(f"AUC interval [{start:g}, {end:g}] must lie within the simulated times "
                           f"[{t[0]:g}, {t[-1]:g}]")
    if end < start:
        raise CartkinError(f"AUC end {end:g} is before its start {start:g}")
    out = np.full(rows.shape[0], np.nan)
    ok = ~_failed(rows)
    if end == start:
        out[ok] = 0.0
        return _scalar(out, single)
    r = rows[ok]
    inner = (t > start) & (t < end)
    tt = np.concatenate([[start], t[inner], [end]])
    vv = np.column_stack([_interpolate(t, r, start, right=True, log_down=True), r[:, inner],
                          _interpolate(t, r, end, right=False, log_down=True)])
    out[ok] = _trapezoids(np.diff(tt), vv[:, :-1], vv[:, 1:]).sum(axis=1)
    return _scalar(out, single)


def terminal_half_life(times, values, n_points: int | None = None,
                       limit: float | None = None) -> float | np.ndarray:
    """Terminal half-life ln 2 / λz from a log-linear regression on the last points after Tmax.

    Only points strictly after Tmax with a value > 0 and > `limit` (the quantification limit, if given)
    enter. With `n_points` the last `n_points` of them are used; otherwise the number (≥ 3) with the best
    adjusted R² is chosen, preferring more points among fits within 1e-4 of the best (WinNonlin's
    best-fit rule; fits that do not decline are not candidates). NaN when no fit of ≥ 3 points declines.
    """
    t, rows, single = _prepare(times, values)
    if n_points is not None:
        if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)):
            raise CartkinError(f"n_points must be a whole number, got {n_points!r}")
        if n_points < _MIN_TERMINAL_POINTS:
            raise CartkinError(f"n_points must be at least {_MIN_TERMINAL_POINTS}, got {n_points}")
    floor = 0.0 if limit is None else max(0.0, _number(limit, "limit"))
    out = np.full(rows.shape[0], np.nan)
    ok = ~_failed(rows)
    r = rows[ok]
    if r.size == 0:
        return _scalar(out, single)

    out[ok] = _half_lives(t, np.ascontiguousarray(r), floor, -1 if n_points is None else int(n_points))
    return _scalar(out, single)


@njit(cache=True, nogil=True)
def _half_lives(t, rows, floor, n_points):
    """The best-fit rule of `terminal_half_life` for each row (all finite), in compiled code: it is the
    costliest summary of a large population (9 µs per subject in numpy, array temporaries per column).

    For each start j among the kept points (after Tmax, above `floor`), a log-linear fit through the kept
    points from j to the end, from running sums accumulated backwards."""
    n_rows, n_t = rows.shape
    result = np.full(n_rows, np.nan)
    x = t - t[n_t - 1]  # shifted (does not change slope or R²) to keep the sums well conditioned
    y = np.empty(n_t)
    keep = np.empty(n_t, dtype=np.bool_)
    for i in range(n_rows):
        r = rows[i]
        peak = 0
        for j in range(1, n_t):
            if r[j] > r[peak]:
                peak = j
        count = 0
        mean = 0.0
        for j in range(n_t):
            keep[j] = j > peak and r[j] > floor
            if keep[j]:
                y[j] = math.log(r[j])
                mean += y[j]
                count += 1
        if count < _MIN_TERMINAL_POINTS:
            continue
        mean /= count
        n = sx = sy = sxx = sxy = syy = 0.0
        best_adjusted = -np.inf
        best_slope = np.nan
        for j in range(n_t - 1, -1, -1):
            if not keep[j]:
                continue
            yj = y[j] - mean
            n += 1.0
            sx += x[j]
            sy += yj
            sxx += x[j] * x[j]
            sxy += x[j] * yj
            syy += yj * yj
            vx = sxx - sx * sx / n
            vy = syy - sy * sy / n
            cxy = sxy - sx * sy / n
            if n < _MIN_TERMINAL_POINTS or not (vx > 0.0 and vy > 0.0):
                continue
            slope = cxy / vx
            r2 = min(max(cxy * cxy / (vx * vy), 0.0), 1.0)
            adjusted = 1.0 - (1.0 - r2) * (n - 1.0) / (n - 2.0)
            if not (slope < 0.0 and math.isfinite(adjusted)):
                continue
            if n_points > 0:
                if n == n_points:
                    best_slope = slope
            elif adjusted >= best_adjusted - _ADJUSTED_R2_TOLERANCE:
                # walking towards more points: a fit within the tolerance of the best so far, with more
                # points, wins; the best value itself is tracked separately
                if adjusted > best_adjusted:
                    best_adjusted = adjusted
                best_slope = slope
        if math.isfinite(best_slope):
            result[i] = _LN2 / -best_slope
    return result


def tlast(times, values, limit: float) -> float | np.ndarray:
    """Last time with a value above `limit` (the quantification limit); NaN if never above."""
    t, rows, single = _prepare(times, values)
    limit = _number(limit, "limit")
    out = np.full(rows.shape[0], np.nan)
    ok = ~_failed(rows)
    above = rows[ok] > limit
    last = t.size - 1 - np.argmax(above[:, ::-1], axis=1)
    out[ok] = np.where(above.any(axis=1), t[last], np.nan)
    return _scalar(out, single)


def duration_below(times, values, threshold) -> float | np.ndarray:
    """Days from the first time to the last spent strictly below `threshold`.

    Crossings are located by linear interpolation. `threshold` is a scalar or one value per subject
    (B-cell aplasia: b_cells below 0.1 × each patient's B0).
    """
    t, rows, single = _prepare(times, values)
    thr = _per_subject(threshold, rows.shape[0], "threshold").reshape(-1, 1)
    d = rows - thr  # below where d < 0
    a, b = d[:, :-1], d[:, 1:]
    dt = np.diff(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(a != b, a / (a - b), 0.0)  # fraction of the segment before the crossing
    below = np.where((a < 0) & (b < 0), dt, 0.0)
    below += np.where((a >= 0) & (b < 0), dt * (1.0 - crossing), 0.0)  # goes below inside the segment
    below += np.where((a < 0) & (b >= 0), dt * crossing, 0.0)  # comes back up inside the segment
    out = below.sum(axis=1)
    out[_failed(rows) | ~np.isfinite(thr[:, 0])] = np.nan
    return _scalar(out, single)


# ---------------------------------------------------------------------------------------------------
# response and relapse (marrow blast %)

def response(times, blast_pct, day: float = 28.0, threshold: float = 5.0) -> bool | float | np.ndarray:
    """Response on `day`: blast % (linearly interpolated) below `threshold` (5%: CR/CRi/MLFS)."""
    t, rows, single = _prepare(times, blast_pct)
    day = _day_inside(t, day, "response")
    threshold = _number(threshold, "threshold")
    return _yes_no(_interpolate(t, rows, day, right=True, log_down=False) < threshold, _failed(rows), single)


def mrd_negative(times, blast_pct, day: float = 28.0, threshold: float = 0.01) -> bool | float | np.ndarray:
    """MRD negativity on `day`: blast % below 0.01% by default."""
    return response(times, blast_pct, day=day, threshold=threshold)


def _relapse(t: np.ndarray, rows: np.ndarray, threshold: float, response_day: float):
    """(responded on response_day, first relapse day or NaN) per row, for rows without failures."""
    at_response = _interpolate(t, rows, response_day, right=True, log_down=False)
    responded = at_response < threshold
    later = t > response_day
    tt = np.concatenate([[response_day], t[later]])
    vv = np.column_stack([at_response, rows[:, later]])
    if tt.size == 1:  # the response day is the last time: no room to relapse
        return responded, np.full(rows.shape[0], np.nan)
    hits = vv >= threshold
    relapsed = responded & hits.any(axis=1)
    j = np.maximum(np.argmax(hits, axis=1), 1)  # responders start below, so the first hit is at j >= 1
    idx = np.arange(rows.shape[0])
    a, b = vv[idx, j - 1], vv[idx, j]
    t0, t1 = tt[j - 1], tt[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where((t1 > t0) & (b > a), t0 + (threshold - a) / (b - a) * (t1 - t0), t1)
    return responded, np.where(relapsed, crossing, np.nan)


def relapse_day(times, blast_pct, threshold: float = 5.0, response_day: float = 28.0) -> float | np.ndarray:
    """First day after a `response_day` response on which blast % climbs back to `threshold`.

    The crossing is located by linear interpolation. NaN for non-responders and for responders who do
    not relapse within the simulated times.
    """
    t, rows, single = _prepare(times, blast_pct)
    response_day = _day_inside(t, response_day, "response_day")
    threshold = _number(threshold, "threshold")
    out = np.full(rows.shape[0], np.nan)
    ok = ~_failed(rows)
    out[ok] = _relapse(t, rows[ok], threshold, response_day)[1]
    return _scalar(out, single)


def relapse_free(times, blast_pct, at_day: float, threshold: float = 5.0,
                 response_day: float = 28.0) -> bool | float | np.ndarray:
    """Responded on `response_day` and not relapsed by `at_day` (non-responders count as not relapse-free)."""
    t, rows, single = _prepare(times, blast_pct)
    response_day = _day_inside(t, response_day, "response_day")
    at_day = _day_inside(t, at_day, "relapse_free")
    if at_day < response_day:
        raise CartkinError(f"relapse_free: day {at_day:g} is before the response day {response_day:g}")
    threshold = _number(threshold, "threshold")
    failed = _failed(rows)
    flag = np.zeros(rows.shape[0], dtype=bool)
    responded, day = _relapse(t, rows[~failed], threshold, response_day)
    flag[~failed] = responded & ~(day <= at_day)
    return _yes_no(flag, failed, single)


def relapse_type(times, blast_total, blast_cd19neg, threshold: float = 5.0,
                 response_day: float = 28.0) -> str | np.ndarray:
    """Type of the first relapse: "cd19neg", "cd19pos", or "" (no relapse, or no response).

    The relapse day is that of `relapse_day` on the total blast % (CD19+ and CD19- blasts). On that day
    (both curves linearly interpolated) the relapse is CD19-negative when the CD19-negative blasts are
    the majority, `blast_cd19neg > blast_total / 2`; otherwise CD19-positive. A failed subject (NaN or
    infinity in either curve) gives "". One subject gives a str, many an array of str.
    """
    t, total, single = _prepare(times, blast_total)
    t2, negative, _ = _prepare(times, blast_cd19neg)
    if negative.shape != total.shape:
        raise CartkinError(f"blast_cd19neg must have the shape of blast_total {total.shape}, got {negative.shape}")
    response_day = _day_inside(t, response_day, "response_day")
    threshold = _number(threshold, "threshold")
    out = np.full(total.shape[0], "", dtype="<U7")
    ok = ~(_failed(total) | _failed(negative))
    days = np.full(total.shape[0], np.nan)
    days[ok] = _relapse(t, total[ok], threshold, response_day)[1]
    for i in np.flatnonzero(np.isfinite(days)):
        day = float(days[i])
        at_total = _interpolate(t, total[i:i + 1], day, right=True, log_down=False)[0]
        at_negative = _interpolate(t, negative[i:i + 1], day, right=True, log_down=False)[0]
        out[i] = "cd19neg" if at_negative > 0.5 * at_total else "cd19pos"
    return str(out[0]) if single else out


def aplasia_at(times, b_cells, baseline, day: float = 182.5,
               fraction: float = 0.1) -> bool | float | np.ndarray:
    """B-cell aplasia on `day`: b_cells (linearly interpolated) below `fraction` × `baseline`.

    `baseline` is a scalar or one value per subject (each patient's B0). Yes/no as `response`.
    """
    t, rows, single = _prepare(times, b_cells)
    day = _day_inside(t, day, "aplasia_at")
    fraction = _number(fraction, "fraction")
    base = _per_subject(baseline, rows.shape[0], "baseline")
    failed = _failed(rows) | ~np.isfinite(base)
    flag = _interpolate(t, rows, day, right=True, log_down=False) < fraction * base
    return _yes_no(flag, failed, single)


#: peak IL-6 (pg/mL) from which a patient is given CRS grade 1, 2, 3 and 4 by `crs_grade`.
#: A modelling assumption, not a clinical rule: neither the ASTCT (Lee 2019) nor the Penn grading uses a
#: cytokine level. Grade rises with peak IL-6 as severe CRS does in Teachey 2016 (Cancer Discov 6:664;
#: peak IL-6, IFN-γ and sgp130 separated grade 4–5 CRS, with IL-6 peaks of thousands of pg/mL, from
#: milder cases with peaks of tens to hundreds). Baseline IL-6 is < 10 pg/mL. The cut-offs were set
#: on the il10 model (first-pass defaults) so that a conventional product at 1e6/kg in high-burden
#: virtual patients (baseline marrow blasts >= 50%; ELIANA's median was 74%) gives roughly the
#: ELIANA/Penn figures: ~85% any grade (ELIANA 77%), ~38% grade 3–4 (ELIANA ~46%). They belong to the
#: model's IL-6 scale: recalibrate them with the model (q_C).
CRS_IL6_THRESHOLDS = (200.0, 350.0, 550.0, 1000.0)


def crs_grade(times, il6, thresholds=CRS_IL6_THRESHOLDS) -> float | np.ndarray:
    """CRS grade 0–4 from the peak IL-6 (pg/mL): the number of `thresholds` the peak reaches.

    `thresholds` are four increasing peak-IL-6 levels for grades 1 to 4 (default CRS_IL6_THRESHOLDS,
    a modelling assumption documented there). The grade is monotone in peak IL-6. A failed subject
    gives NaN. One subject gives a float, many an array.
    """
    t, rows, single = _prepare(times, il6)
    try:
        cut = np.asarray(thresholds, dtype=float)
    except (TypeError, ValueError):
        raise CartkinError("thresholds must be four numbers") from None
    if cut.shape != (4,) or not np.all(np.isfinite(cut)) or np.any(np.diff(cut) <= 0):
        raise CartkinError(f"thresholds must be four finite increasing numbers (grades 1–4), got {thresholds!r}")
    out = np.full(rows.shape[0], np.nan)
    ok = ~_failed(rows)
    peak = rows[ok].max(axis=1)
    out[ok] = (peak[:, None] >= cut[None, :]).sum(axis=1)
    return _scalar(out, single)


def exposure_summary(times, values, limit: float = 0.0) -> dict[str, float | np.ndarray]:
    """Cmax, Tmax, AUC0–28, AUC0–84, terminal half-life and Tlast in one dict.

    `limit` is the quantification limit used by Tlast and the half-life (0: any positive value counts).
    An AUC whose window [0, end] is not covered by `times` is NaN.
    """
    t, rows, single = _prepare(times, values)
    limit = _number(limit, "limit")
    nan = np.full(rows.shape[0], np.nan)

    def window(end: float):
        covered = t[0] <= 0.0 and _snap(t, end) <= t[-1]
        return auc(t, rows, 0.0, end) if covered else nan.copy()

    out = {"cmax": cmax(t, rows), "tmax": tmax(t, rows), "auc_0_28": window(28.0),
           "auc_0_84": window(84.0), "half_life": terminal_half_life(t, rows, limit=limit),
           "tlast": tlast(t, rows, limit)}
    return {k: float(np.asarray(x)[0]) if single else np.asarray(x, dtype=float) for k, x in out.items()}
