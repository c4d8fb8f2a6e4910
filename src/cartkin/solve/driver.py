"""The integration loop: owns time, output times, dose events and discontinuities.

A method (`cartkin.solve.methods`: dopri5, rodas) only knows how to advance smoothly from one time to the next. In AUTO mode the
driver starts with the explicit method and, once it reports stiffness, continues with the stiff
method from that point on (the CAR T expansion is non-stiff, the long contraction tail is stiff). The driver cuts
the time axis at every dose and model breakpoint, asks the method to advance across each piece, and
applies dose events between pieces. Observations at the time of a dose report the pre-dose value
(NONMEM/mrgsolve convention: the pre-infusion sample at day 0 reads 0).

`ts` (the segment's midpoint) is passed to the right-hand side so that Piecewise switches in time
(stein2019's Tmax) take the same branch at every stage of a step, even at the segment's end.
"""
import numpy as np
from numba import njit

from . import status
from .common import all_finite

# how `integrate` uses its two methods
EXPLICIT = 0
STIFF = 1
AUTO = 2


@njit(inline="always")
def segment_stops(t0, t_end, event_times, breakpoints):
    """Where the integration stops, sorted and distinct: the events and breakpoints strictly inside
    (t0, t_end), then t_end (the scalar driver and the lockstep kernel both cut the time axis here)."""
    stops = np.empty(event_times.size + breakpoints.size + 1)
    m = 0
    for i in range(event_times.size):
        if t0 < event_times[i] < t_end:
            stops[m] = event_times[i]
            m += 1
    for i in range(breakpoints.size):
        if t0 < breakpoints[i] < t_end:
            stops[m] = breakpoints[i]
            m += 1
    stops[m] = t_end
    m += 1
    return np.unique(stops[:m])


@njit(inline="always")  # inlined so the model functions it takes stay cacheable
def integrate(explicit, stiff, mode, functions, t0, y0, p, t_out, event_times, event_deltas, breakpoints, options,
              out, counters):
    """Solve from t0 (state y0) and write the state at each sorted t_out into out.

    explicit, stiff: two methods' `advance` (used by mode EXPLICIT, STIFF, or both in AUTO).
    functions: the model's compiled (rhs, jac, dfdt, lu_factor, lu_solve), passed to the method.
    options: (rtol, atol, max_steps, nonnegative), nonnegative a boolean per state: the methods fail with
    NEGATIVE_STATE when such a state goes below -(10 atol + rtol * the largest value it has taken).

    event_times are sorted; event_deltas[i] is added to the state at event_times[i].
    breakpoints are extra times where the right-hand side is discontinuous.
    Returns (status, time reached).
    """
    n_out = t_out.size
    y = y0.copy()
    if not (all_finite(y) and all_finite(p)):
        return status.BAD_INPUT, t0
    if n_out == 0:
        return status.SUCCESS, t0
    t_end = t_out[n_out - 1]
    n_ev = event_times.size
    stops = segment_stops(t0, t_end, event_times, breakpoints)

    k = 0
    while k < n_out and t_out[k] <= t0:
        out[k, :] = y
        k += 1
    ev = 0
    while ev < n_ev and event_times[ev] <= t0:
        y += event_deltas[ev]
        ev += 1

    t = t0
    h = 0.0
    peak = np.maximum(y, 0.0)
    method_options = (options[0], options[1], options[2], options[3], peak)
    use_stiff = mode == STIFF
    for s in range(stops.size):
        t_stop = stops[s]
        ts = 0.5 * (t + t_stop)
        if not use_stiff:
            code, t, h, k = explicit(functions, t, t_stop, y, p, ts, h, method_options, t_out, k, out, counters,
                                     mode == AUTO)
            if code == status.STIFF:
                use_stiff = True  # carry on from t with the stiff method
        if use_stiff:
            code, t, h, k = stiff(functions, t, t_stop, y, p, ts, h, method_options, t_out, k, out, counters, False)
        if code != status.SUCCESS:
            return code, t
        t = t_stop
        dosed = False
        while ev < n_ev and event_times[ev] <= t:
            y += event_deltas[ev]
            ev += 1
            dosed = True
        if dosed:
            h = 0.0  # restart the step-size estimate after a jump in the state
    return status.SUCCESS, t
