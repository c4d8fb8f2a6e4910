"""One subject: initial state, dose events and breakpoints from its parameters, then the driver.

A generic `@njit` template; each generated model module binds it to that model's functions.
Dose kinds are those of `cartkin.solve.events` (PER_KG, FLAT, AMOUNT).
"""
import numpy as np
from numba import njit

from . import status
from .driver import integrate
from .events import FLAT, PER_KG


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
def solve_subject(explicit, stiff, mode, functions, setup, p, t_out, ev_t, ev_amount, ev_kind, ev_target, options,
                  out, counters):
    """Solve one subject from day 0; returns (status, time reached or failed).

    functions: the model's (rhs, jac, dfdt, lu_factor, lu_solve); setup: its (initial, dose_scale,
    breakpoints, number of breakpoints, index of the weight parameter); options: (rtol, atol, max_steps).
    """
    initial, dose_scale, breakpoints, n_breakpoints, weight_index = setup
    n_states = out.shape[1]
    y0 = np.empty(n_states)
    initial(p, y0)
    deltas = dose_deltas(dose_scale, weight_index, p, n_states, ev_amount, ev_kind, ev_target)
    bps = np.empty(n_breakpoints)
    breakpoints(p, bps)
    for i in range(out.shape[0]):
        for j in range(n_states):
            out[i, j] = np.nan
    code, t_reached = integrate(explicit, stiff, mode, functions, 0.0, y0, p, t_out, ev_t, deltas, bps, options,
                                out, counters)
    if code == status.SUCCESS:
        return code, np.nan
    return code, t_reached
