"""Export a symbolic `Model` to SBML Level 3 Version 2 core (for COPASI, tellurium, libRoadRunner).

Written with the standard library's `xml.etree` from the same sympy definition the numba code is
generated from, so the exported ODEs are the model's ODEs:

* one constant compartment of size 1; each state is a species in it with a **rate rule** (the
  exported d[S]/dt is the model's equation, exactly; with size 1 concentration equals amount);
* parameters are constant global parameters with the model's default values;
* initial states are `initialConcentration` values at the defaults plus **initial assignments** from
  the model's initial-state expressions, so changing a parameter such as `L0` moves its state;
* observables are non-constant parameters defined by **assignment rules** (an observable that is a
  state, like liu2022's `nTA`, is that species);
* MathML comes from a small printer of the subset cartkin models use: + − × ÷, powers and roots,
  exp/ln and other elementary functions, abs, min/max, Heaviside, relations, and/or/not and
  `piecewise`. Piecewise terms in time (stein2019's switch at Tmax) are exported as `piecewise` in the
  SBML time symbol, which is the model's own definition; the declared breakpoints are listed in the
  model notes (SBML has no such hint: tools integrate across the switch with their own step control).

Dosing is not part of the SBML export: SBML has no notion of a cartkin `Regimen`. A single infusion at
day 0 can be included as an initial condition (`dose_per_kg=...`): the dose target starts at its
initial value plus `dose_per_kg × per_kg` (il10: `f_blood × D / 70000`), exactly as cartkin applies a
day-0 dose. Later infusions are not exported.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Callable

import sympy as sp

from ...errors import CartkinError
from ..definition import Model, t

SBML_NS = "http://www.sbml.org/sbml/level3/version2/core"
MATHML_NS = "http://www.w3.org/1998/Math/MathML"
XHTML_NS = "http://www.w3.org/1999/xhtml"
TIME_URL = "http://www.sbml.org/sbml/symbols/time"

#: sympy function → MathML element for one-argument functions
_FUNCTIONS: dict[type, str] = {
    sp.exp: "exp", sp.log: "ln", sp.Abs: "abs", sp.floor: "floor", sp.ceiling: "ceiling",
    sp.sin: "sin", sp.cos: "cos", sp.tan: "tan", sp.asin: "arcsin", sp.acos: "arccos", sp.atan: "arctan",
    sp.sinh: "sinh", sp.cosh: "cosh", sp.tanh: "tanh",
}
_RELATIONS: dict[type, str] = {
    sp.StrictLessThan: "lt", sp.StrictGreaterThan: "gt", sp.LessThan: "leq", sp.GreaterThan: "geq",
    sp.Equality: "eq", sp.Unequality: "neq",
}
_LOGIC: dict[type, str] = {sp.And: "and", sp.Or: "or", sp.Not: "not", sp.Xor: "xor"}


def to_sbml(model: Model, dose_per_kg: float | None = None) -> str:
    """SBML L3V2 text of `model` (states as species with rate rules; see the module docstring).

    dose_per_kg: optional day-0 dose in cells/kg, written as an initial condition of the dose target
    (a parameter `dose_per_kg` scaled by the model's dose expression). Other dosing is not exported.
    """
    states = model.state_names
    taken = set(states) | set(model.parameter_names) | set(model.observables)
    model_id = _sid(model.name)
    model_id = _fresh(model_id + "_model" if model_id in taken else model_id, taken)  # il10 has an il10 observable
    compartment = _fresh("central", taken)
    dose_id = None
    initial = {s: sp.sympify(model.initial.get(s, 0)) for s in states}
    if dose_per_kg is not None:
        if model.dose is None:
            raise CartkinError(f"model {model.name} has no dose input: dose_per_kg cannot be exported")
        if not (isinstance(dose_per_kg, (int, float)) and math.isfinite(dose_per_kg) and dose_per_kg >= 0):
            raise CartkinError(f"dose_per_kg must be a finite number >= 0, got {dose_per_kg!r}")
        dose_id = _fresh("dose_per_kg", taken)
        target = model.dose.target
        initial[target] = initial[target] + sp.Symbol(dose_id) * sp.sympify(model.dose.per_kg)
    defaults = {sp.Symbol(q.name): q.default for q in model.parameter_info}
    if dose_id is not None:
        defaults[sp.Symbol(dose_id)] = float(dose_per_kg)

    root = ET.Element("sbml", {"xmlns": SBML_NS, "level": "3", "version": "2"})
    sbml_model = ET.SubElement(root, "model", {"id": model_id, "name": model.description or model.name})
    sbml_model.set("timeUnits", "day")
    sbml_model.append(_notes(model, dose_id))
    units = ET.SubElement(ET.SubElement(sbml_model, "listOfUnitDefinitions"), "unitDefinition", {"id": "day"})
    ET.SubElement(ET.SubElement(units, "listOfUnits"), "unit", {"kind": "second", "exponent": "1", "scale": "0",
                                                                "multiplier": "86400"})

    comps = ET.SubElement(sbml_model, "listOfCompartments")
    ET.SubElement(comps, "compartment", {"id": compartment, "spatialDimensions": "3", "size": "1",
                                         "constant": "true"})
    species = ET.SubElement(sbml_model, "listOfSpecies")
    for s in model.states:
        value = _number(initial[s.name].subs(defaults).subs(t, 0), f"initial value of {s.name}")
        ET.SubElement(species, "species", {
            "id": s.name, "name": _label(s.description, s.unit, s.name), "compartment": compartment,
            "initialConcentration": _real(value), "hasOnlySubstanceUnits": "false",
            "boundaryCondition": "false", "constant": "false"})

    params = ET.SubElement(sbml_model, "listOfParameters")
    for q in model.parameter_info:
        ET.SubElement(params, "parameter", {"id": q.name, "name": _label(q.description, q.unit, q.name),
                                            "value": _real(q.default), "constant": "true"})
    if dose_id is not None:
        ET.SubElement(params, "parameter", {"id": dose_id, "name": "day-0 dose (cells/kg)",
                                            "value": _real(float(dose_per_kg)), "constant": "true"})
    derived = [o for o in model.observable_info if o.name not in states]
    for o in derived:
        ET.SubElement(params, "parameter", {"id": o.name, "name": _label(o.description, o.unit, o.name),
                                            "constant": "false"})

    assigned = [s for s in states if initial[s].free_symbols]
    if assigned:
        block = ET.SubElement(sbml_model, "listOfInitialAssignments")
        for s in assigned:
            node = ET.SubElement(block, "initialAssignment", {"symbol": s})
            node.append(math_element(initial[s], f"initial value of {s}"))

    rules = ET.SubElement(sbml_model, "listOfRules")
    for o in derived:
        node = ET.SubElement(rules, "assignmentRule", {"variable": o.name})
        node.append(math_element(o.expression, f"observable {o.name}"))
    for s in states:
        node = ET.SubElement(rules, "rateRule", {"variable": s})
        node.append(math_element(model.equations[s], f"equation of {s}"))

    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def math_element(expr: sp.Expr, where: str = "expression") -> ET.Element:
    """`<math>` (content MathML, SBML subset) for a sympy expression; `where` names it in errors."""
    node = ET.Element("math", {"xmlns": MATHML_NS})
    node.append(_mathml(sp.sympify(expr), where))
    return node


def _mathml(e: sp.Basic, where: str) -> ET.Element:
    def rec(x: sp.Basic) -> ET.Element:
        return _mathml(x, where)

    if e == t:
        node = ET.Element("csymbol", {"encoding": "text", "definitionURL": TIME_URL})
        node.text = "t"
        return node
    if isinstance(e, sp.Symbol):
        return _leaf("ci", e.name)
    if e is sp.true or e is sp.false:
        return ET.Element("true" if e is sp.true else "false")
    if e is sp.E:
        return ET.Element("exponentiale")
    if e is sp.pi:
        return ET.Element("pi")
    if isinstance(e, sp.Integer):
        return _leaf("cn", str(int(e)), type="integer")
    if isinstance(e, sp.Rational):
        return _apply("divide", _leaf("cn", str(e.p), type="integer"), _leaf("cn", str(e.q), type="integer"))
    if e.is_Number:
        value = float(e)
        if math.isnan(value):
            return ET.Element("notanumber")
        if math.isinf(value):
            inf = ET.Element("infinity")
            return inf if value > 0 else _apply("minus", inf)
        return _leaf("cn", _real(value), type="real")
    if isinstance(e, sp.Add):
        terms = _ordered(e.args)
        negative = [-a for a in terms if a.could_extract_minus_sign()]
        positive = [a for a in terms if not a.could_extract_minus_sign()]
        if negative and positive:  # a - b - c reads as minus(plus(a), plus(b, c))
            return _apply("minus", _sum([rec(a) for a in positive]), _sum([rec(a) for a in negative]))
        return _apply("plus", *[rec(a) for a in terms])
    if isinstance(e, sp.Mul):
        coeff, rest = e.as_coeff_Mul()
        if coeff == -1:
            return _apply("minus", rec(rest))
        numer, denom = [], []
        for f in _ordered(e.args):
            if isinstance(f, sp.Pow) and f.exp.is_Number and f.exp < 0:
                denom.append(f.base ** -f.exp)
            elif isinstance(f, sp.Rational) and not isinstance(f, sp.Integer) and f.p == 1:
                denom.append(sp.Integer(f.q))
            else:
                numer.append(f)
        top = _product([rec(f) for f in numer]) if numer else _leaf("cn", "1", type="integer")
        if not denom:
            return top
        return _apply("divide", top, _product([rec(f) for f in denom]))
    if isinstance(e, sp.Pow):
        base, exp = e.args
        if exp == -1:
            return _apply("divide", _leaf("cn", "1", type="integer"), rec(base))
        if exp == sp.Rational(1, 2):
            return _apply("root", rec(base))
        if exp == sp.Rational(-1, 2):
            return _apply("divide", _leaf("cn", "1", type="integer"), _apply("root", rec(base)))
        return _apply("power", rec(base), rec(exp))
    if type(e) in _FUNCTIONS and len(e.args) == 1:
        return _apply(_FUNCTIONS[type(e)], rec(e.args[0]))
    if isinstance(e, (sp.Max, sp.Min)):
        return _apply("max" if isinstance(e, sp.Max) else "min", *[rec(a) for a in _ordered(e.args)])
    if isinstance(e, sp.Heaviside):
        x = e.args[0]
        h0 = e.args[1] if len(e.args) > 1 else sp.Rational(1, 2)
        return _piecewise([(sp.Integer(1), x > 0), (sp.Integer(0), x < 0)], h0, rec)
    if isinstance(e, sp.Piecewise):
        pairs = list(e.args)
        otherwise = None
        if pairs and pairs[-1].cond is sp.true:
            otherwise = pairs.pop().expr
        return _piecewise([(p.expr, p.cond) for p in pairs], otherwise, rec)
    if type(e) in _RELATIONS:
        return _apply(_RELATIONS[type(e)], rec(e.lhs), rec(e.rhs))
    if type(e) in _LOGIC:
        return _apply(_LOGIC[type(e)], *[rec(a) for a in e.args])
    raise CartkinError(f"cannot export {type(e).__name__} ({e}) in the {where} to SBML: not in the "
                       f"MathML subset cartkin writes")


def _piecewise(pieces: list, otherwise: sp.Basic | None, rec: Callable) -> ET.Element:
    node = ET.Element("piecewise")
    for expr, cond in pieces:
        piece = ET.SubElement(node, "piece")
        piece.append(rec(sp.sympify(expr)))
        piece.append(rec(sp.sympify(cond)))
    if otherwise is not None:
        ET.SubElement(node, "otherwise").append(rec(sp.sympify(otherwise)))
    return node


def _sum(nodes: list[ET.Element]) -> ET.Element:
    return nodes[0] if len(nodes) == 1 else _apply("plus", *nodes)


def _product(nodes: list[ET.Element]) -> ET.Element:
    return nodes[0] if len(nodes) == 1 else _apply("times", *nodes)


def _apply(op: str, *args: ET.Element) -> ET.Element:
    node = ET.Element("apply")
    node.append(ET.Element(op))
    node.extend(args)
    return node


def _leaf(tag: str, text: str, **attrs: str) -> ET.Element:
    node = ET.Element(tag, attrs)
    node.text = text
    return node


def _ordered(args) -> list:
    """A stable order of arguments (sympy's sort key), so the same model always gives the same text."""
    return sorted(args, key=sp.default_sort_key)


def _real(value: float) -> str:
    """Shortest text that reads back to the same double."""
    return repr(float(value))


def _number(expr: sp.Expr, where: str) -> float:
    try:
        value = float(expr)
    except (TypeError, ValueError):
        raise CartkinError(f"the {where} does not evaluate to a number at the default parameters") from None
    return value


def _label(description: str, unit: str, fallback: str) -> str:
    text = description or fallback
    return f"{text} [{unit}]" if unit and unit != "-" else text


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _sid(name: str) -> str:
    """An SBML SId from a model name (letters, digits, underscores; not starting with a digit)."""
    sid = "".join(c if (c.isascii() and (c.isalnum() or c == "_")) else "_" for c in name)
    return sid if sid and not sid[0].isdigit() else f"model_{sid}"


def _notes(model: Model, dose_id: str | None) -> ET.Element:
    notes = ET.Element("notes")
    body = ET.SubElement(notes, "body", {"xmlns": XHTML_NS})
    lines = [f"Exported by cartkin from the symbolic model '{model.name}' (fingerprint "
             f"{model.fingerprint()}). States are species with rate rules in a compartment of size 1; "
             f"observables are assignment rules."]
    if model.dose is not None:
        if dose_id is None:
            lines.append(f"Dosing is not exported: doses add {model.dose.per_kg} per cell/kg to "
                         f"{model.dose.target}; set its initial value to include a day-0 dose.")
        else:
            lines.append(f"A day-0 dose of {dose_id} cells/kg is in the initial value of {model.dose.target} "
                         f"(+ {dose_id}*{model.dose.per_kg}); later infusions are not exported.")
    if model.breakpoints:
        bps = ", ".join(str(b) for b in model.breakpoints)
        lines.append(f"The equations switch (piecewise in time) at t = {bps}.")
    for text in lines:
        _leaf_into(body, "p", text)
    return notes


def _leaf_into(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text
