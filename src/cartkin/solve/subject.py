"""One subject: initial state, dose events and breakpoints from its parameters, then the driver.

A generic `@njit` template; each generated model module binds it to that model's functions.
Dose kinds: 0 = cells/kg, 1 = flat cells (divided by body weight), 2 = amount in the target state's units.
"""
import numpy as np
from numba import njit

from . import status
from .driver import integrate

PER_KG = 0
FLAT = 1
AMOUNT = 2


@njit(inline="always")  # inlined so the model functions it takes stay cacheable
def dose_deltas(dose_scale, weight_index, p, n_states, ev_amount, ev_kind, ev_target):
    """State increments of each dose event for parameter vector p."""
    deltas = np.zeros((ev_amount.size, n_states))
    scale = dose_scale(p)
    for e in range(ev_amount.size):
        kind = ev_kind[e]
        if kind == PER_KG:
            amount = ev_amount[e] * scale
        elif kind == FLAT:
            amount = ev_amount[e] * scale / p[weight_index]
        else:
            amount = ev_amount[e]
        deltas[e, ev_target[e]] = amount
    return deltas


@njit(inline="always")  # inlined so the model functions it takes stay cacheable
def solve_subject(explicit, stiff, mode, rhs, jac, dfdt, lu_factor, lu_solve, initial, dose_scale, breakpoints, n_breakpoints, weight_index,
                  p, t_out, ev_t, ev_amount, ev_kind, ev_target, rtol, atol, max_steps, out, counters):
    """Solve one subject from day 0; returns (status, time reached or failed)."""
    n_states = out.shape[1]
    y0 = np.empty(n_states)
    initial(p, y0)
    deltas = dose_deltas(dose_scale, weight_index, p, n_states, ev_amount, ev_kind, ev_target)
    bps = np.empty(n_breakpoints)
    breakpoints(p, bps)
    for i in range(out.shape[0]):
        for j in range(n_states):
            out[i, j] = np.nan
    code, t_reached = integrate(explicit, stiff, mode, rhs, jac, dfdt, lu_factor, lu_solve, 0.0, y0, p, t_out, ev_t, deltas, bps,
                                rtol, atol, max_steps, out, counters)
    if code == status.SUCCESS:
        return code, np.nan
    return code, t_reached
