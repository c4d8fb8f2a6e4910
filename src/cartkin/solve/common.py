"""Numerics shared by the integrators: error norm, initial step, solver counters.

All functions are plain `@njit` templates; they are compiled into each model's generated module.
"""
import math

import numpy as np
from numba import njit

# indices into the int64 counter array every integrator updates
N_STEPS = 0
N_ACCEPTED = 1
N_REJECTED = 2
N_RHS = 3
N_JAC = 4
N_COUNTERS = 5


@njit(cache=True, error_model="numpy")
def error_norm(err, y_old, y_new, rtol, atol):
    """Hairer's RMS norm of `err` scaled by atol + rtol * max(|y_old|, |y_new|)."""
    n = err.size
    s = 0.0
    for i in range(n):
        sk = atol + rtol * max(abs(y_old[i]), abs(y_new[i]))
        r = err[i] / sk
        s += r * r
    return math.sqrt(s / n)


@njit(cache=True, error_model="numpy")
def all_finite(x):
    for i in range(x.size):
        if not math.isfinite(x[i]):
            return False
    return True


@njit(inline="always")  # inlined so the model functions it takes stay cacheable
def initial_step(rhs, t, y, f0, p, ts, t_end, order, rtol, atol, counters):
    """Hairer & Wanner's starting step estimate (HINIT), bounded by the segment length."""
    n = y.size
    d0 = 0.0
    d1 = 0.0
    for i in range(n):
        sk = atol + rtol * abs(y[i])
        d0 += (y[i] / sk) ** 2
        d1 += (f0[i] / sk) ** 2
    d0 = math.sqrt(d0 / n)
    d1 = math.sqrt(d1 / n)
    span = t_end - t
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    h0 = min(h0, span)
    y1 = np.empty(n)
    f1 = np.empty(n)
    for i in range(n):
        y1[i] = y[i] + h0 * f0[i]
    rhs(t + h0, y1, p, ts, f1)
    counters[N_RHS] += 1
    d2 = 0.0
    for i in range(n):
        sk = atol + rtol * abs(y[i])
        d2 += ((f1[i] - f0[i]) / sk) ** 2
    d2 = math.sqrt(d2 / n) / h0
    if not math.isfinite(d2):
        return min(h0 * 1e-3, span)
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100.0 * h0, h1, span)


@njit(cache=True, error_model="numpy")
def negative_state(y, nonnegative, peak, rtol, atol):
    """True if a state flagged non-negative is below -(10 atol + rtol * peak), peak being the largest
    value the state has taken so far (updated here): the error the tolerances allow near zero for a
    state of that size. Smaller excursions below zero are the integrator's ordinary error."""
    bad = False
    for i in range(y.size):
        if y[i] > peak[i]:
            peak[i] = y[i]
        if nonnegative[i] and y[i] < -(10.0 * atol + rtol * peak[i]):
            bad = True
    return bad
