"""Independent reference solutions with scipy, built from the symbolic model by sympy.lambdify.

Shares nothing with cartkin's code generator or integrators except the symbolic definition.
"""
import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

from cartkin.model.definition import t as T

TS = sp.Symbol("ts_ref")


def lambdified(model):
    """(rhs, initial, observe, dose_scale, jacobian) as plain numpy functions of (t, y, p, ts) etc."""
    ys = [sp.Symbol(s) for s in model.state_names]
    ps = [sp.Symbol(q) for q in model.parameter_names]

    def at_ts(expr):
        return sp.sympify(expr).replace(sp.Piecewise,
                                        lambda *pairs: sp.Piecewise(*[(e, c.subs(T, TS)) for e, c in pairs]))
    rhs = sp.Matrix([at_ts(model.equations[s]) for s in model.state_names])
    f = sp.lambdify([T, ys, ps, TS], list(rhs), "numpy")
    jac = sp.lambdify([T, ys, ps, TS], rhs.jacobian(ys), "numpy")
    y0 = sp.lambdify([ps], [sp.sympify(model.initial.get(s, 0)) for s in model.state_names], "numpy")
    g = sp.lambdify([T, ys, ps], [o.expression for o in model.observable_info], "numpy")
    scale = sp.lambdify([ps], model.dose.per_kg if model.dose else sp.Integer(0), "numpy")
    return f, y0, g, scale, jac


def reference_solution(model, params, times, doses_per_kg=(), breakpoints=(), rtol=1e-12, atol=1e-14):
    """Radau solution at `times`, integrating piece by piece between doses and breakpoints.

    doses_per_kg: sequence of (time, dose per kg) added to the model's dose target.
    """
    f, y0f, _, scale, jac = lambdified(model)
    p = [params[q] for q in model.parameter_names]
    y = np.array(y0f(p), dtype=float)
    times = np.asarray(times, float)
    stops = sorted({float(d[0]) for d in doses_per_kg} | {float(b) for b in breakpoints} | {float(times[-1])})
    stops = [s for s in stops if 0 < s <= times[-1]]
    out = np.full((times.size, y.size), np.nan)
    target = model.state_index(model.dose.target) if model.dose else None
    out[times <= 0] = y

    def dose_at(time):
        return sum(d for (td, d) in doses_per_kg if td == time)

    y = y.copy()
    if target is not None:
        y[target] += dose_at(0.0) * scale(p)
    t0 = 0.0
    for stop in stops:
        mask = (times > t0) & (times <= stop)
        ts = 0.5 * (t0 + stop)
        t_eval = np.unique(np.append(times[mask], stop))
        sol = solve_ivp(lambda tt, yy: f(tt, yy, p, ts), (t0, stop), y, method="Radau",
                        jac=lambda tt, yy: np.asarray(jac(tt, yy, p, ts), dtype=float), t_eval=t_eval, rtol=rtol, atol=atol)
        assert sol.success, sol.message
        if mask.any():
            out[mask] = sol.y.T[np.searchsorted(t_eval, times[mask])]
        y = sol.y[:, -1].copy()
        if target is not None:
            y[target] += dose_at(stop) * scale(p)
        t0 = stop
    return out
