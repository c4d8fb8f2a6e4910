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
def dose_deltas(dose_increments, weight_index, p, n_states, ev_amount, ev_kind, ev_target):
    """State increments of each dose event for parameter vector p.

    A PER_KG dose of D cells/kg adds D × increments[0] to the states (the model's dose target and any
    other state the dose increments, e.g. sensitivity states); a FLAT dose of C cells adds
    C × increments[0] / weight + C × increments[1]; an AMOUNT goes to its event's target as it is.
    """
    deltas = np.zeros((ev_amount.size, n_states))
    inc = np.zeros((2, n_states))
    dose_increments(p, inc)
    for e in range(ev_amount.size):
        kind = ev_kind[e]
        if kind == PER_KG:
            for j in range(n_states):
                deltas[e, j] = ev_amount[e] * inc[0, j]
        elif kind == FLAT:
            for j in range(n_states):
                deltas[e, j] = ev_amount[e] * inc[0, j] / p[weight_index]
                if inc[1, j] != 0.0:
                    deltas[e, j] += ev_amount[e] * inc[1, j]
        else:
            deltas[e, ev_target[e]] = ev_amount[e]
    return deltas


@njit(inline="always")  # inlined so the model functions it takes stay cacheable
def solve_subject(explicit, stiff, mode, functions, setup, p, t_out, ev_t, ev_amount, ev_kind, ev_target, options,
                  out, counters):
    """Solve one subject from day 0; returns (status, time reached or failed).

    functions: the model's (rhs, jac, dfdt, lu_factor, lu_solve); setup: its (initial, dose_increments,
    breakpoints, number of breakpoints, index of the weight parameter); options: (rtol, atol, max_steps).
    """
    initial, dose_increments, breakpoints, n_breakpoints, weight_index = setup
    n_states = out.shape[1]
    y0 = np.empty(n_states)
    initial(p, y0)
    deltas = dose_deltas(dose_increments, weight_index, p, n_states, ev_amount, ev_kind, ev_target)
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
