"""Forward sensitivity equations, generated from the symbolic model.

`augmented_model(model, free)` is an ordinary `Model` whose states are y and S_j = ∂y/∂p_j, with
dS_j/dt = (∂f/∂y) S_j + ∂f/∂p_j and S_j(0) = ∂y0/∂p_j, and whose observables are the model's
observables g and their total derivatives (∂g/∂y) S_j + ∂g/∂p_j. It goes through the same code
generation and integrators as any model, so gradients for fitting are integrated with the states in
compiled code, with no finite differences.

Not covered yet (refused with a clear error): free parameters that scale a dose (the sensitivity would
jump at each infusion) or that move a breakpoint (stein2019's Tmax).
"""
from __future__ import annotations

from typing import Sequence

import sympy as sp

from ...errors import CartkinError
from ...model.definition import Model, Observable, State


def sensitivity_name(observable: str, parameter: str) -> str:
    return f"d_{observable}__d_{parameter}"


def augmented_model(model: Model, free: Sequence[str]) -> Model:
    """The model extended with the forward sensitivities of every state to the `free` parameters."""
    free = tuple(free)
    if not free:
        raise CartkinError("no free parameters to compute sensitivities for")
    for name in free:
        model.parameter_index(name)
        symbol = sp.Symbol(name)
        if model.dose is not None and symbol in sp.sympify(model.dose.per_kg).free_symbols:
            raise CartkinError(f"{name} scales the dose of model {model.name}; estimating it is not supported "
                               f"yet (fix it with --fix {name}=VALUE)")
        if model.dose is not None and model.dose.weight == name:
            raise CartkinError(f"{name} is the body weight used for flat doses; it cannot be estimated")
        if any(symbol in sp.sympify(b).free_symbols for b in model.breakpoints):
            raise CartkinError(f"{name} moves a breakpoint of model {model.name} (a switch time); estimating it "
                               f"is not supported yet")
    ys = [sp.Symbol(s) for s in model.state_names]
    f = sp.Matrix([sp.sympify(model.equations[s]) for s in model.state_names])
    J = f.jacobian(ys)
    y0 = sp.Matrix([sp.sympify(model.initial.get(s, 0)) for s in model.state_names])
    states = list(model.states)
    equations = dict(model.equations)
    initial = dict(model.initial)
    S = {}
    for p in free:
        col = [sp.Symbol(f"S_{s}__{p}") for s in model.state_names]
        S[p] = sp.Matrix(col)
        dfdp = f.diff(sp.Symbol(p))
        rhs = J * S[p] + dfdp
        dy0 = y0.diff(sp.Symbol(p))
        for i, s in enumerate(model.state_names):
            states.append(State(str(col[i]), "-", f"∂{s}/∂{p}"))
            equations[str(col[i])] = rhs[i]
            if dy0[i] != 0:
                initial[str(col[i])] = dy0[i]
    observables = list(model.observable_info)
    for o in model.observable_info:
        g = sp.sympify(o.expression)
        dgdy = sp.Matrix([[g.diff(y) for y in ys]])
        for p in free:
            total = (dgdy * S[p])[0, 0] + g.diff(sp.Symbol(p))
            observables.append(Observable(sensitivity_name(o.name, p), total, "-", f"∂{o.name}/∂{p}"))
    return Model(name=f"{model.name}__sensitivities__{'_'.join(free)}", states=tuple(states),
                 parameter_info=model.parameter_info, equations=equations, observable_info=tuple(observables),
                 initial=initial, dose=model.dose, breakpoints=model.breakpoints,
                 description=f"{model.name} with forward sensitivities to {', '.join(free)}")
