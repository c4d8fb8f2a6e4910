"""Forward sensitivity equations, generated from the symbolic model.

`augmented_model(model, free)` is an ordinary `Model` whose states are y and S_j = ∂y/∂p_j, with
dS_j/dt = (∂f/∂y) S_j + ∂f/∂p_j and S_j(0) = ∂y0/∂p_j, and whose observables are the model's
observables g and their total derivatives (∂g/∂y) S_j + ∂g/∂p_j. It goes through the same code
generation and integrators as any model, so gradients for fitting are integrated with the states in
compiled code, with no finite differences.

Parameters that scale a dose (il10's f_blood in per_kg, or the body weight WT of a flat dose) are covered
through the dose increments: a per-kg dose of D cells/kg adds D × ∂inc_s/∂p to S_s,p for every state s
the dose increments by inc_s (the target's inc is per_kg), and a flat dose of C cells adds
C × ∂(inc_s / WT)/∂p; see `DoseInput`.

Not covered yet (refused with a clear error): free parameters that move a breakpoint (stein2019's Tmax).
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
                 initial=initial, dose=_augmented_dose(model, free), breakpoints=model.breakpoints,
                 description=f"{model.name} with forward sensitivities to {', '.join(free)}")


def _augmented_dose(model: Model, free: tuple[str, ...]):
    """The dose input of the augmented model: the model's own increments, plus each sensitivity state's.

    For a state s incremented by inc_s per cell/kg (and fe_s extra per cell of a flat dose), S_s,p gets
    ∂inc_s/∂p per cell/kg and, for flat doses, inc_s × ∂(1/W)/∂p + ∂fe_s/∂p extra per cell, so that
    C × (∂inc_s/∂p / W + that) = C × ∂(inc_s / W + fe_s)/∂p. Unchanged (same object) when no free
    parameter enters the dose, so such augmented models keep a single-target dose."""
    dose = model.dose
    if dose is None:
        return None
    names = model.state_names
    per_kg = dose.per_kg_vector(names)
    flat = dose.flat_vector(names)
    inv_w = 1 / sp.Symbol(dose.weight) if dose.weight else sp.Integer(0)
    increments = dict(dose.increments)
    flat_increments = dict(dose.flat_increments)
    for p in free:
        x = sp.Symbol(p)
        for s, inc, fe in zip(names, per_kg, flat):
            d_inc = sp.simplify(inc.diff(x))
            d_flat = sp.simplify(inc * inv_w.diff(x) + fe.diff(x))
            if d_inc != 0:
                increments[f"S_{s}__{p}"] = d_inc
            if d_flat != 0:
                flat_increments[f"S_{s}__{p}"] = d_flat
    if not increments and not flat_increments:
        return dose
    from dataclasses import replace
    return replace(dose, increments=increments, flat_increments=flat_increments)
