"""The immutable symbolic model: states, parameters, equations, observables, initial state, dosing.

A `Model` is written once with sympy. Everything numeric (right-hand side, Jacobians, observables,
dose scaling) is generated from it by `cartkin.codegen`; nothing is written twice by hand.
Models are frozen, down to their equation and initial-state mappings (read-only copies):
`with_defaults` returns a new model, it never edits one in place.
"""
from __future__ import annotations

import hashlib
import math
from types import MappingProxyType
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import sympy as sp

from ..errors import CartkinError

#: the time symbol every model uses (days since the first infusion)
t = sp.Symbol("t")


@dataclass(frozen=True)
class Parameter:
    """A named model parameter with its default and what it means."""
    name: str
    default: float
    unit: str = "-"
    description: str = ""
    source: str = ""
    lower: float = 0.0
    upper: float = math.inf
    covariate: bool = False  # per-patient value (baseline burden, body weight) rather than a rate

    def __post_init__(self):
        if not (self.lower <= self.default <= self.upper):
            raise CartkinError(f"parameter {self.name}: default {self.default} outside "
                               f"[{self.lower}, {self.upper}]")


@dataclass(frozen=True)
class State:
    """A state variable. nonnegative: an amount or concentration, which the solver must not take
    meaningfully below zero (a solve that does fails with status NEGATIVE_STATE)."""
    name: str
    unit: str = "-"
    description: str = ""
    nonnegative: bool = False


@dataclass(frozen=True)
class Observable:
    name: str
    expression: sp.Expr
    unit: str = "-"
    description: str = ""


@dataclass(frozen=True)
class DoseInput:
    """How a cell dose enters the model.

    `per_kg` is the sympy expression that converts one cell/kg into units of the `target` state
    (for il10: f_blood / 70000). A flat dose of D cells becomes D / WT cells/kg, so the model needs a
    `weight` parameter for flat doses.

    A dose may increment more states than its target: `increments` maps other states to their increment
    per cell/kg (a per-kg dose of D cells/kg adds D × per_kg to the target and D × increments[s] to s; a
    flat dose of C cells adds C × (that) / weight), and `flat_increments` maps states to an extra increment
    per cell of a flat dose only. Models rarely need either; the forward-sensitivity model uses them so
    that a sensitivity state jumps by D × ∂per_kg/∂p at each dose (and by -C × per_kg / weight² for
    p = weight). Both are stored as sorted (state, expression) pairs.
    """
    target: str
    per_kg: sp.Expr
    weight: str | None = "WT"
    increments: Mapping[str, sp.Expr] | tuple = ()
    flat_increments: Mapping[str, sp.Expr] | tuple = ()

    def __post_init__(self):
        for label in ("increments", "flat_increments"):
            value = getattr(self, label)
            pairs = value.items() if isinstance(value, Mapping) else value
            object.__setattr__(self, label, tuple(sorted((str(k), sp.sympify(v)) for k, v in pairs)))

    def per_kg_vector(self, state_names: Sequence[str]) -> list:
        """Increment of every state per cell/kg, in `state_names` order."""
        extra = dict(self.increments)
        return [sp.sympify(self.per_kg) if s == self.target else extra.get(s, sp.Integer(0)) for s in state_names]

    def flat_vector(self, state_names: Sequence[str]) -> list:
        """Extra increment of every state per cell of a flat dose (on top of per_kg_vector / weight)."""
        extra = dict(self.flat_increments)
        return [extra.get(s, sp.Integer(0)) for s in state_names]


@dataclass(frozen=True)
class Model:
    """A compartmental ODE model defined symbolically (see module docstring).

    equations: state name -> sympy expression for its time derivative.
    initial: state name -> sympy expression of parameters (missing states start at 0).
    breakpoints: parameter expressions giving times where the equations switch (Piecewise in t);
    the solver stops exactly there.
    """
    name: str
    states: tuple[State, ...]
    parameter_info: tuple[Parameter, ...]
    equations: Mapping[str, sp.Expr]
    observable_info: tuple[Observable, ...] = ()
    initial: Mapping[str, sp.Expr] = field(default_factory=dict)
    dose: DoseInput | None = None
    breakpoints: tuple[sp.Expr, ...] = ()
    description: str = ""
    default_fit: tuple[str, ...] = ()          # parameters estimated when the user names none
    default_stiff: bool = False                 # hint for method="auto"

    def __post_init__(self):
        # read-only copies: the fingerprint (and the compiled code named by it) must never go stale
        object.__setattr__(self, "equations", MappingProxyType(dict(self.equations)))
        object.__setattr__(self, "initial", MappingProxyType(dict(self.initial)))
        for label in ("states", "parameter_info", "observable_info", "breakpoints", "default_fit"):
            object.__setattr__(self, label, tuple(getattr(self, label)))
        names = [s.name for s in self.states]
        pnames = [q.name for q in self.parameter_info]
        _check_unique(names + pnames + ["t"], self.name)
        _check_unique([o.name for o in self.observable_info] + pnames + ["t"], self.name)
        for o in self.observable_info:
            if o.name in names and sp.sympify(o.expression) != sp.Symbol(o.name):
                raise CartkinError(f"model {self.name}: observable {o.name!r} has a state's name "
                                   f"but is not that state")
        known = set(names + pnames + ["t"])
        if set(self.equations) != set(names):
            missing = set(names) - set(self.equations)
            extra = set(self.equations) - set(names)
            raise CartkinError(f"model {self.name}: equations must cover exactly the states "
                               f"(missing {sorted(missing)}, unknown {sorted(extra)})")
        for label, expr in list(self.equations.items()) + [(o.name, o.expression) for o in self.observable_info] \
                + list(self.initial.items()) + [("breakpoint", b) for b in self.breakpoints]:
            free = sp.sympify(expr).free_symbols
            unknown = {str(s) for s in free} - known
            if unknown:
                raise CartkinError(f"model {self.name}: {label} uses unknown symbols {sorted(unknown)}")
        for s in self.initial:
            if s not in names:
                raise CartkinError(f"model {self.name}: initial value for unknown state {s!r}")
        if self.dose is not None:
            if self.dose.target not in names:
                raise CartkinError(f"model {self.name}: dose target {self.dose.target!r} is not a state")
            if self.dose.weight is not None and self.dose.weight not in pnames:
                raise CartkinError(f"model {self.name}: dose weight {self.dose.weight!r} is not a parameter")
            for label, pairs in (("increments", self.dose.increments), ("flat_increments", self.dose.flat_increments)):
                for s, expr in pairs:
                    if s not in names or s == self.dose.target and label == "increments":
                        raise CartkinError(f"model {self.name}: dose {label} name {s!r}, which is not a state "
                                           f"other than the target")
                    unknown = {str(x) for x in expr.free_symbols} - set(pnames)
                    if unknown:
                        raise CartkinError(f"model {self.name}: dose {label} for {s} use unknown symbols "
                                           f"{sorted(unknown)}")
            if self.dose.flat_increments and self.dose.weight is None:
                raise CartkinError(f"model {self.name}: dose flat_increments need a weight parameter")
        for q in self.default_fit:
            if q not in pnames:
                raise CartkinError(f"model {self.name}: default_fit names unknown parameter {q!r}")

    # --- the small interface the rest of cartkin uses -------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.parameter_info)

    @property
    def parameters(self) -> dict[str, float]:
        """Default value of every parameter, by name."""
        return {q.name: q.default for q in self.parameter_info}

    @property
    def observables(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.observable_info)

    def n_states(self) -> int:
        return len(self.states)

    def n_parameters(self) -> int:
        return len(self.parameter_info)

    def parameter(self, name: str) -> Parameter:
        for q in self.parameter_info:
            if q.name == name:
                return q
        raise CartkinError(unknown_name_message("parameter", name, self.parameter_names, self.name))

    def unit(self, name: str) -> str:
        """Unit of an observable or a state (observables first, as they are what users plot)."""
        for item in (*self.observable_info, *self.states):
            if item.name == name:
                return item.unit
        raise CartkinError(unknown_name_message("observable or state", name,
                                                (*self.observables, *self.state_names), self.name))

    def state_index(self, name: str) -> int:
        try:
            return self.state_names.index(name)
        except ValueError:
            raise CartkinError(unknown_name_message("state", name, self.state_names, self.name)) from None

    def parameter_index(self, name: str) -> int:
        try:
            return self.parameter_names.index(name)
        except ValueError:
            raise CartkinError(unknown_name_message("parameter", name, self.parameter_names, self.name)) from None

    def estimated(self, estimate=None, fix=()) -> tuple[str, ...]:
        """The parameters a fit estimates: `estimate` if given, else default_fit without the fixed ones."""
        return tuple(estimate) if estimate else tuple(q for q in self.default_fit if q not in fix)

    def with_defaults(self, **values: float) -> "Model":
        """A new model whose defaults are changed (the symbolic definition is untouched)."""
        info = []
        for q in self.parameter_info:
            if q.name in values:
                info.append(replace(q, default=float(values.pop(q.name))))
            else:
                info.append(q)
        if values:
            name = next(iter(values))
            raise CartkinError(unknown_name_message("parameter", name, self.parameter_names, self.name))
        model = replace(self, parameter_info=tuple(info))
        if "_origin" in self.__dict__:  # a built-in model with other defaults still pickles by name
            object.__setattr__(model, "_origin", self.__dict__["_origin"])
        return model

    def fingerprint(self) -> str:
        """Hash of the symbolic content (not of the defaults): names the generated code.

        Computed once per (immutable) model: printing the sympy expressions takes ~70 ms for an
        augmented sensitivity model, and every solve looks the compiled module up by this key."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return cached
        parts = [
            self.name, ",".join(self.state_names), ",".join(self.parameter_names),
            ";".join(sp.srepr(sp.sympify(self.equations[s])) for s in self.state_names),
            ";".join(f"{o.name}={sp.srepr(o.expression)}" for o in self.observable_info),
            ";".join(f"{k}={sp.srepr(sp.sympify(v))}" for k, v in sorted(self.initial.items())),
            repr(self.dose and (self.dose.target, sp.srepr(self.dose.per_kg), self.dose.weight)),
            ";".join(sp.srepr(sp.sympify(b)) for b in self.breakpoints),
            ",".join(s.name for s in self.states if s.nonnegative),
        ]
        if self.dose is not None and (self.dose.increments or self.dose.flat_increments):
            # only when present, so the fingerprints of single-target models stay as they were
            parts.append(repr([[(k, sp.srepr(v)) for k, v in pairs]
                               for pairs in (self.dose.increments, self.dose.flat_increments)]))
        text = "|".join(parts)
        cached = hashlib.sha256(text.encode()).hexdigest()[:16]
        object.__setattr__(self, "_fingerprint", cached)  # frozen dataclass: not a field, not compared
        return cached

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, states={list(self.state_names)}, "
                f"{self.n_parameters()} parameters, observables={list(self.observables)})")

    def __hash__(self):
        return hash((self.fingerprint(), tuple(q.default for q in self.parameter_info)))

    def __reduce__(self):
        """Pickled as its constructor arguments, so plain pickle (and so any executor: Dask, a process
        pool) sends a model to another process. A built-in model (from `load_model`, or its `with_defaults`)
        travels as its registry name and changed defaults (a few bytes; the receiver loads its own copy);
        any other model as its fields (sympy expressions pickle) with its fingerprint, so the receiver
        finds the compiled code in its cache without printing the expressions again. Worked out once per
        model."""
        cached = self.__dict__.get("_reduced")
        if cached is None:
            cached = _reduction(self)
            object.__setattr__(self, "_reduced", cached)  # frozen dataclass: not a field, not compared
        return cached


def _reduction(model: Model) -> tuple:
    origin = model.__dict__.get("_origin")  # (load, name): set by the registry on its models
    if origin is not None:
        load, name = origin
        builtin = load(name)
        defaults = {q.name: q.default for q, b in zip(model.parameter_info, builtin.parameter_info)
                    if q.default != b.default}
        return _builtin_model, (load, name, defaults)
    fields = {name: getattr(model, name) for name in model.__dataclass_fields__}
    fields["equations"], fields["initial"] = dict(model.equations), dict(model.initial)
    return _model_from_fields, (fields, model.fingerprint())


def _builtin_model(load, name: str, defaults: dict) -> Model:
    model = load(name)
    return model.with_defaults(**defaults) if defaults else model


def _model_from_fields(fields: dict, fingerprint: str) -> Model:
    model = Model(**fields)
    object.__setattr__(model, "_fingerprint", fingerprint)
    return model


def _check_unique(names: Sequence[str], model: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise CartkinError(f"model {model}: name {n!r} is used twice (states, parameters, observables)")
        if not n.isidentifier():
            raise CartkinError(f"model {model}: {n!r} is not a valid name")
        seen.add(n)


def unknown_name_message(kind: str, name: str, known: Sequence[str], model: str) -> str:
    import difflib
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r} for model {model}{hint}"


def symbols(names: str):
    """sympy symbols by name, as models use them: `N, E, M = symbols("N E M")`."""
    return sp.symbols(names)
