"""Dormand–Prince 5(4): adaptive explicit Runge–Kutta with 4th-order dense output.

Coefficients are those of Dormand & Prince (1980) as in Hairer's DOPRI5 and scipy's RK45. Stiffness
is detected as in Hairer's code (the step's estimate of h*|lambda| exceeds 3.25 fifteen times), which
lets method="auto" hand stiff problems to the Rosenbrock solver.

`advance` has the signature every method shares; see `cartkin.solve.driver.integrate`.
"""
import math

import numpy as np
from numba import njit

from .. import status
from ..common import N_ACCEPTED, N_REJECTED, N_RHS, N_STEPS, all_finite, error_norm, initial_step, negative_state

ORDER = 5

C2, C3, C4, C5 = 0.2, 0.3, 0.8, 8.0 / 9.0
A21 = 0.2
A31, A32 = 3.0 / 40.0, 9.0 / 40.0
A41, A42, A43 = 44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0
A51, A52, A53, A54 = 19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0
A61, A62, A63, A64, A65 = 9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0
B1, B3, B4, B5, B6 = 35.0 / 384.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0
E1, E3, E4, E5, E6, E7 = (71.0 / 57600.0, -71.0 / 16695.0, 71.0 / 1920.0,
                          -17253.0 / 339200.0, 22.0 / 525.0, -1.0 / 40.0)

# dense output: y(t + theta*h) = y + h * sum_j K_j * b_j(theta), b_j(theta) = sum_m P[j, m] theta^(m+1)
# (Hairer's continuous extension as in scipy's RK45). Scalars, not a global array, so numba can cache.
P10, P11, P12, P13 = 1.0, -8048581381.0 / 2820520608.0, 8663915743.0 / 2820520608.0, -12715105075.0 / 11282082432.0
P31, P32, P33 = 131558114200.0 / 32700410799.0, -68118460800.0 / 10900136933.0, 87487479700.0 / 32700410799.0
P41, P42, P43 = -1754552775.0 / 470086768.0, 14199869525.0 / 1410260304.0, -10690763975.0 / 1880347072.0
P51, P52, P53 = 127303824393.0 / 49829197408.0, -318862633887.0 / 49829197408.0, 701980252875.0 / 199316789632.0
P61, P62, P63 = -282668133.0 / 205662961.0, 2019193451.0 / 616988883.0, -1453857185.0 / 822651844.0
P71, P72, P73 = 40617522.0 / 29380423.0, -110615467.0 / 29380423.0, 69997945.0 / 29380423.0


@njit(error_model="numpy")
def _dense(K, y, h, theta, out_row):
    t2 = theta * theta
    t3 = t2 * theta
    t4 = t3 * theta
    b1 = P10 * theta + P11 * t2 + P12 * t3 + P13 * t4
    b3 = P31 * t2 + P32 * t3 + P33 * t4
    b4 = P41 * t2 + P42 * t3 + P43 * t4
    b5 = P51 * t2 + P52 * t3 + P53 * t4
    b6 = P61 * t2 + P62 * t3 + P63 * t4
    b7 = P71 * t2 + P72 * t3 + P73 * t4
    for i in range(y.size):
        out_row[i] = y[i] + h * (b1 * K[0, i] + b3 * K[2, i] + b4 * K[3, i] + b5 * K[4, i]
                                 + b6 * K[5, i] + b7 * K[6, i])


@njit(inline="always")  # inlined so the model functions it takes stay cacheable
def advance(functions, t, t_end, y, p, ts, h, options, t_out, k, out, counters, detect_stiff):
    """Integrate y from t to t_end in place; fill out[k] for every t_out[k] <= t_end.

    functions: the model's (rhs, jac, dfdt, lu_factor, lu_solve); options: (rtol, atol, max_steps, nonnegative
    mask, running peak of each state).
    Returns (status, t reached, suggested next step, next output index).
    """
    rhs = functions[0]
    rtol, atol, max_steps, nonnegative, peak = options
    n = y.size
    K = np.empty((7, n))
    y_new = np.empty(n)
    y_stage = np.empty(n)
    err = np.empty(n)
    rhs(t, y, p, ts, K[0])
    counters[N_RHS] += 1
    if not all_finite(K[0]):
        return status.NON_FINITE, t, h, k
    if h <= 0.0:
        h = initial_step(rhs, t, y, K[0], p, ts, t_end, ORDER, rtol, atol, counters)
    h_min_factor = 1e-14
    n_stiff = 0
    n_nonstiff = 0
    log_err_prev = math.log(1e-4)
    rejected_last = False
    while t < t_end:
        if counters[N_STEPS] >= max_steps:
            return status.MAX_STEPS, t, h, k
        if t + 1.01 * h >= t_end:
            h = t_end - t
            last = True
        else:
            last = False
        if h <= h_min_factor * max(abs(t), 1.0):
            return status.STEP_UNDERFLOW, t, h, k
        counters[N_STEPS] += 1
        for i in range(n):
            y_stage[i] = y[i] + h * A21 * K[0, i]
        rhs(t + C2 * h, y_stage, p, ts, K[1])
        for i in range(n):
            y_stage[i] = y[i] + h * (A31 * K[0, i] + A32 * K[1, i])
        rhs(t + C3 * h, y_stage, p, ts, K[2])
        for i in range(n):
            y_stage[i] = y[i] + h * (A41 * K[0, i] + A42 * K[1, i] + A43 * K[2, i])
        rhs(t + C4 * h, y_stage, p, ts, K[3])
        for i in range(n):
            y_stage[i] = y[i] + h * (A51 * K[0, i] + A52 * K[1, i] + A53 * K[2, i] + A54 * K[3, i])
        rhs(t + C5 * h, y_stage, p, ts, K[4])
        for i in range(n):
            y_stage[i] = y[i] + h * (A61 * K[0, i] + A62 * K[1, i] + A63 * K[2, i]
                                     + A64 * K[3, i] + A65 * K[4, i])
        t_new = t_end if last else t + h
        rhs(t_new, y_stage, p, ts, K[5])
        for i in range(n):
            y_new[i] = y[i] + h * (B1 * K[0, i] + B3 * K[2, i] + B4 * K[3, i] + B5 * K[4, i] + B6 * K[5, i])
        rhs(t_new, y_new, p, ts, K[6])
        counters[N_RHS] += 6
        for i in range(n):
            err[i] = h * (E1 * K[0, i] + E3 * K[2, i] + E4 * K[3, i] + E5 * K[4, i]
                          + E6 * K[5, i] + E7 * K[6, i])
        e = error_norm(err, y, y_new, rtol, atol)
        if not math.isfinite(e):  # err involves every stage, so this also catches non-finite K
            # treat a blow-up inside the step as a rejection; persistent blow-up underflows h
            counters[N_REJECTED] += 1
            h *= 0.25
            if h <= h_min_factor * max(abs(t), 1.0):
                return status.NON_FINITE, t, h, k
            rejected_last = True
            continue
        if e <= 1.0:
            counters[N_ACCEPTED] += 1
            # dense output for every requested time inside (t, t_new]
            while k < t_out.size and t_out[k] <= t_new:
                if t_out[k] == t_new:
                    out[k, :] = y_new
                else:
                    _dense(K, y, h, (t_out[k] - t) / h, out[k])
                k += 1
            if negative_state(y_new, nonnegative, peak, rtol, atol):
                return status.NEGATIVE_STATE, t_new, h, k
            if detect_stiff:
                num = 0.0
                den = 0.0
                for i in range(n):
                    num += (K[6, i] - K[5, i]) ** 2
                    den += (y_new[i] - y_stage[i]) ** 2
                if den > 0.0 and h * math.sqrt(num / den) > 3.25:
                    n_nonstiff = 0
                    n_stiff += 1
                    if n_stiff == 15:
                        y[:] = y_new
                        return status.STIFF, t_new, h, k
                else:
                    n_nonstiff += 1
                    if n_nonstiff == 6:
                        n_stiff = 0
            t = t_new
            y[:] = y_new
            K[0, :] = K[6]
            # PI step-size control (Hairer: alpha = 0.2 - 0.75 beta, beta = 0.04)
            log_e = math.log(max(e, 1e-10))
            fac = 0.9 * math.exp(-0.17 * log_e + 0.04 * log_err_prev)
            fac = min(10.0, max(0.2, fac))
            if rejected_last:
                fac = min(fac, 1.0)
            log_err_prev = max(log_e, math.log(1e-4))
            h *= fac
            rejected_last = False
        else:
            counters[N_REJECTED] += 1
            h *= max(0.2, 0.9 * e ** -0.2)
            rejected_last = True
    return status.SUCCESS, t, h, k
