"""Rodas4: a stiffly accurate 6-stage Rosenbrock method of order 4(3) with 3rd-order dense output.

Coefficients and formulation from Hairer & Wanner's RODAS (Solving ODEs II, §VI.4): each stage solves
(1/(γh) I − J) k_i = f(t + c_i h, y + Σ a_ij k_j) + Σ (c_ij/h) k_j + γ_i h ∂f/∂t, with J the generated
analytic Jacobian and ∂f/∂t the generated time derivative. The error estimate is the last stage; the
step size follows Hairer's controller with Gustafsson's predictive correction.

`advance` has the signature every method shares; see `cartkin.solve.driver.integrate`. lu_factor and lu_solve are
the model's generated dense LU (`linalg.source`).
"""
import math

import numpy as np
from numba import njit

from .. import status
from ..common import N_ACCEPTED, N_JAC, N_REJECTED, N_RHS, N_STEPS, all_finite, error_norm, initial_step, negative_state

ORDER = 4
GAMMA = 0.25
C2, C3, C4 = 0.386, 0.21, 0.63
D1, D2, D3, D4 = 0.25, -0.1043, 0.1035, -0.3620000000000023e-01
A21 = 0.1544000000000000e+01
A31, A32 = 0.9466785280815826e+00, 0.2557011698983284e+00
A41, A42, A43 = 0.3314825187068521e+01, 0.2896124015972201e+01, 0.9986419139977817e+00
A51, A52, A53, A54 = (0.1221224509226641e+01, 0.6019134481288629e+01, 0.1253708332932087e+02,
                      -0.6878860361058950e+00)
C21 = -0.5668800000000000e+01
C31, C32 = -0.2430093356833875e+01, -0.2063599157091915e+00
C41, C42, C43 = -0.1073529058151375e+00, -0.9594562251023355e+01, -0.2047028614809616e+02
C51, C52, C53, C54 = (0.7496443313967647e+01, -0.1024680431464352e+02, -0.3399990352819905e+02,
                      0.1170890893206160e+02)
C61, C62, C63, C64, C65 = (0.8083246795921522e+01, -0.7981132988064893e+01, -0.3152159432874371e+02,
                           0.1631930543123136e+02, -0.6058818238834054e+01)
# dense output: y(t + s h) = (1-s) y0 + s (y1 + (1-s) (q2 + s q3)), q = Σ d_j k_j
D21, D22, D23, D24, D25 = (0.1012623508344586e+02, -0.7487995877610167e+01, -0.3480091861555747e+02,
                           -0.7992771707568823e+01, 0.1025137723295662e+01)
D31, D32, D33, D34, D35 = (-0.6762803392801253e+00, 0.6087714651680015e+01, 0.1643084320892478e+02,
                           0.2476722511418386e+02, -0.6594389125716872e+01)

FAC_MIN = 1.0 / 6.0  # hnew / h bounds, as in Hairer's code (1/FAC1, 1/FAC2)
FAC_MAX = 6.0
SAFE = 0.9


@njit(inline="always")  # inlined so the model functions it takes stay cacheable
def advance(functions, t, t_end, y, p, ts, h, options, t_out, k, out, counters, detect_stiff):
    """Integrate y from t to t_end in place; fill out[k] for every t_out[k] <= t_end.

    functions: the model's (rhs, jac, dfdt, lu_factor, lu_solve); options: (rtol, atol, max_steps, nonnegative
    mask, running peak of each state).
    Returns (status, t reached, suggested next step, next output index).
    """
    rhs, jac, dfdt, lu_factor, lu_solve = functions
    rtol, atol, max_steps, nonnegative, peak = options
    n = y.size
    K = np.empty((6, n))
    f0 = np.empty(n)
    ft = np.empty(n)
    dy = np.empty(n)
    y_new = np.empty(n)
    J = np.empty((n, n))
    W = np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    rhs(t, y, p, ts, f0)
    counters[N_RHS] += 1
    if not all_finite(f0):
        return status.NON_FINITE, t, h, k
    if h <= 0.0:
        h = initial_step(rhs, t, y, f0, p, ts, t_end, ORDER, rtol, atol, counters)
    need_jac = True
    rejected_last = False
    h_acc = 0.0
    err_acc = 1e-2
    n_accepted = 0
    while t < t_end:
        if counters[N_STEPS] >= max_steps:
            return status.MAX_STEPS, t, h, k
        if t + 1.01 * h >= t_end:
            h = t_end - t
            last = True
        else:
            last = False
        if h <= 1e-14 * max(abs(t), 1.0):
            return status.STEP_UNDERFLOW, t, h, k
        counters[N_STEPS] += 1
        if need_jac:
            jac(t, y, p, ts, J)
            dfdt(t, y, p, ts, ft)
            counters[N_JAC] += 1
            need_jac = False
        fac = 1.0 / (h * GAMMA)
        for i in range(n):
            for j in range(n):
                W[i, j] = -J[i, j]
            W[i, i] += fac
        if not lu_factor(W, piv):
            counters[N_REJECTED] += 1
            h *= 0.5
            rejected_last = True
            continue
        t_new = t_end if last else t + h
        # stage 1
        for i in range(n):
            K[0, i] = f0[i] + h * D1 * ft[i]
        lu_solve(W, piv, K[0])
        # stage 2
        for i in range(n):
            y_new[i] = y[i] + A21 * K[0, i]
        rhs(t + C2 * h, y_new, p, ts, dy)
        for i in range(n):
            K[1, i] = dy[i] + (C21 * K[0, i]) / h + h * D2 * ft[i]
        lu_solve(W, piv, K[1])
        # stage 3
        for i in range(n):
            y_new[i] = y[i] + A31 * K[0, i] + A32 * K[1, i]
        rhs(t + C3 * h, y_new, p, ts, dy)
        for i in range(n):
            K[2, i] = dy[i] + (C31 * K[0, i] + C32 * K[1, i]) / h + h * D3 * ft[i]
        lu_solve(W, piv, K[2])
        # stage 4
        for i in range(n):
            y_new[i] = y[i] + A41 * K[0, i] + A42 * K[1, i] + A43 * K[2, i]
        rhs(t + C4 * h, y_new, p, ts, dy)
        for i in range(n):
            K[3, i] = dy[i] + (C41 * K[0, i] + C42 * K[1, i] + C43 * K[2, i]) / h + h * D4 * ft[i]
        lu_solve(W, piv, K[3])
        # stage 5
        for i in range(n):
            y_new[i] = y[i] + A51 * K[0, i] + A52 * K[1, i] + A53 * K[2, i] + A54 * K[3, i]
        rhs(t_new, y_new, p, ts, dy)
        for i in range(n):
            K[4, i] = dy[i] + (C51 * K[0, i] + C52 * K[1, i] + C53 * K[2, i] + C54 * K[3, i]) / h
        lu_solve(W, piv, K[4])
        # stage 6 (embedded solution y_new + k5, error estimate k6)
        for i in range(n):
            y_new[i] += K[4, i]
        rhs(t_new, y_new, p, ts, dy)
        for i in range(n):
            K[5, i] = dy[i] + (C61 * K[0, i] + C62 * K[1, i] + C63 * K[2, i] + C64 * K[3, i]
                               + C65 * K[4, i]) / h
        lu_solve(W, piv, K[5])
        for i in range(n):
            y_new[i] += K[5, i]
        counters[N_RHS] += 5
        e = error_norm(K[5], y, y_new, rtol, atol)
        if not (math.isfinite(e) and all_finite(y_new)):
            counters[N_REJECTED] += 1
            h *= 0.25
            if h <= 1e-14 * max(abs(t), 1.0):
                return status.NON_FINITE, t, h, k
            rejected_last = True
            continue
        fac = max(1.0 / FAC_MAX, min(1.0 / FAC_MIN, e ** 0.25 / SAFE))
        h_new = h / fac
        if e <= 1.0:
            counters[N_ACCEPTED] += 1
            n_accepted += 1
            if n_accepted > 1:  # Gustafsson's predictive controller
                fac_g = (h_acc / h) * (e * e / err_acc) ** 0.25 / SAFE
                fac_g = max(1.0 / FAC_MAX, min(1.0 / FAC_MIN, fac_g))
                fac = max(fac, fac_g)
                h_new = h / fac
            h_acc = h
            err_acc = max(1e-2, e)
            # dense output for every requested time inside (t, t_new]
            while k < t_out.size and t_out[k] <= t_new:
                if t_out[k] == t_new:
                    out[k, :] = y_new
                else:
                    s = (t_out[k] - t) / h
                    s1 = 1.0 - s
                    for i in range(n):
                        q2 = D21 * K[0, i] + D22 * K[1, i] + D23 * K[2, i] + D24 * K[3, i] + D25 * K[4, i]
                        q3 = D31 * K[0, i] + D32 * K[1, i] + D33 * K[2, i] + D34 * K[3, i] + D35 * K[4, i]
                        out[k, i] = s1 * y[i] + s * (y_new[i] + s1 * (q2 + s * q3))
                k += 1
            if negative_state(y_new, nonnegative, peak, rtol, atol):
                return status.NEGATIVE_STATE, t_new, h, k
            t = t_new
            y[:] = y_new
            if rejected_last:
                h_new = min(h_new, h)
            rejected_last = False
            h = h_new
            if t < t_end:
                rhs(t, y, p, ts, f0)
                counters[N_RHS] += 1
                need_jac = True
        else:
            counters[N_REJECTED] += 1
            rejected_last = True
            h = h_new
    return status.SUCCESS, t, h, k
