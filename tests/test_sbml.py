"""SBML export: well-formed L3V2, every name with its value, and rate rules that equal the generated RHS.

The MathML is read back by a small evaluator written here (independent of the exporter) and compared
with the numba right-hand side, initial state and observables that cartkin generates for the same model.
libsbml / libroadrunner checks run only when those optional packages are installed.
"""
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import cartkin
from cartkin.cli import main
from cartkin.codegen import compile_model
from cartkin.model.export import to_sbml

NS = {"s": "http://www.sbml.org/sbml/level3/version2/core", "m": "http://www.w3.org/1998/Math/MathML"}
M = "{http://www.w3.org/1998/Math/MathML}"
TIME = "http://www.sbml.org/sbml/symbols/time"

_NARY = {"plus": lambda xs: math.fsum(xs), "times": lambda xs: math.prod(xs), "max": max, "min": min,
         "and": all, "or": any}
_UNARY = {"exp": math.exp, "ln": math.log, "abs": abs, "root": math.sqrt, "not": lambda x: not x,
          "floor": math.floor, "ceiling": math.ceil, "sin": math.sin, "cos": math.cos, "tan": math.tan}
_BINARY = {"divide": lambda a, b: a / b, "power": lambda a, b: a ** b, "lt": lambda a, b: a < b,
           "gt": lambda a, b: a > b, "leq": lambda a, b: a <= b, "geq": lambda a, b: a >= b,
           "eq": lambda a, b: a == b, "neq": lambda a, b: a != b}


def evaluate(node, env, time):
    """Value of a content-MathML node (the subset SBML uses) with identifiers from `env`."""
    tag = node.tag.replace(M, "")
    if tag == "math":
        (child,) = list(node)
        return evaluate(child, env, time)
    if tag == "ci":
        return env[node.text.strip()]
    if tag == "csymbol":
        assert node.get("definitionURL") == TIME
        return time
    if tag == "cn":
        kind = node.get("type", "real")
        assert kind in ("integer", "real"), kind
        return float(node.text)
    if tag in ("true", "false"):
        return tag == "true"
    if tag == "exponentiale":
        return math.e
    if tag == "pi":
        return math.pi
    if tag == "piecewise":
        for child in node:
            if child.tag == M + "piece":
                value, cond = list(child)
                if evaluate(cond, env, time):
                    return evaluate(value, env, time)
            else:
                (value,) = list(child)
                return evaluate(value, env, time)
        return math.nan
    assert tag == "apply", f"unexpected MathML element {tag}"
    op, *args = list(node)
    op = op.tag.replace(M, "")
    vals = [evaluate(a, env, time) for a in args]
    if op == "minus":
        return -vals[0] if len(vals) == 1 else vals[0] - vals[1]
    if op in _NARY:
        return _NARY[op](vals)
    if op in _UNARY:
        (x,) = vals
        return _UNARY[op](x)
    return _BINARY[op](*vals)


def parse(model, dose_per_kg=None):
    root = ET.fromstring(to_sbml(model, dose_per_kg))
    assert root.tag == "{%s}sbml" % NS["s"] and root.get("level") == "3" and root.get("version") == "2"
    return root.find("s:model", NS)


def random_point(model, rng):
    """Parameters 1/3x..3x their defaults (within bounds), states log-uniform over 1e-3..1e4, t in 0..30."""
    P = np.array([q.default for q in model.parameter_info]) * np.exp(rng.uniform(-1.1, 1.1, model.n_parameters()))
    P = np.clip(P, [q.lower for q in model.parameter_info], [q.upper for q in model.parameter_info])
    y = 10 ** rng.uniform(-3, 4, model.n_states())
    return P, y, rng.uniform(0, 30)


def close(a, b, rel=1e-12):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


@pytest.mark.parametrize("name", cartkin.list_models())
def test_every_state_parameter_and_observable_is_there_with_its_value(name):
    model = cartkin.load_model(name)
    sbml = parse(model)
    species = {s.get("id"): s for s in sbml.iterfind("s:listOfSpecies/s:species", NS)}
    params = {q.get("id"): q for q in sbml.iterfind("s:listOfParameters/s:parameter", NS)}
    assert list(species) == list(model.state_names)
    for q in model.parameter_info:
        assert params[q.name].get("constant") == "true"
        assert float(params[q.name].get("value")) == q.default
    rules = {r.get("variable"): r for r in sbml.find("s:listOfRules", NS)}
    for s in model.state_names:
        assert rules[s].tag == "{%s}rateRule" % NS["s"]
    for o in model.observables:
        assert o in species or (params[o].get("constant") == "false"
                                and rules[o].tag == "{%s}assignmentRule" % NS["s"])
    # initial values at the defaults, both as numbers and through the initial assignments
    mod = compile_model(model)
    p = np.array([q.default for q in model.parameter_info])
    y0 = np.empty(model.n_states())
    mod.initial(p, y0)
    env = dict(zip(model.parameter_names, p))
    assigned = {a.get("symbol"): a for a in sbml.iterfind("s:listOfInitialAssignments/s:initialAssignment", NS)}
    for i, s in enumerate(model.state_names):
        assert close(float(species[s].get("initialConcentration")), y0[i])
        if s in assigned:
            assert close(evaluate(assigned[s].find("m:math", NS), env, 0.0), y0[i])
    ids = [e.get("id") for e in sbml.iter() if e.get("id")]
    assert len(ids) == len(set(ids)), "SBML ids must be unique"


@pytest.mark.parametrize("name", cartkin.list_models())
def test_rate_rules_and_observables_equal_the_generated_code(name):
    model = cartkin.load_model(name)
    sbml = parse(model)
    rules = {r.get("variable"): r.find("m:math", NS) for r in sbml.find("s:listOfRules", NS)}
    mod = compile_model(model)
    rng = np.random.default_rng(7)
    f = np.empty(model.n_states())
    g = np.empty(len(model.observables))
    for _ in range(40):
        p, y, time = random_point(model, rng)
        mod.rhs(time, y, p, time, f)  # conditions evaluated at ts = t: the same time as SBML's
        mod.observe(time, y, p, g)
        env = dict(zip(model.parameter_names, p)) | dict(zip(model.state_names, y))
        for i, s in enumerate(model.state_names):
            value = evaluate(rules[s], env, time)
            assert close(value, f[i]), (name, s, value, f[i])
        for k, o in enumerate(model.observables):
            value = env[o] if o in model.state_names else evaluate(rules[o], env, time)
            assert close(value, g[k]), (name, o, value, g[k])


def test_stein2019_switch_is_piecewise_in_time():
    model = cartkin.load_model("stein2019")
    rules = {r.get("variable"): r.find("m:math", NS) for r in parse(model).find("s:listOfRules", NS)}
    assert rules["E"].find("m:piecewise", NS) is not None
    env = dict(model.parameters, E=100.0, M=1.0)
    tmax = model.parameters["Tmax"]
    rate = math.log(env["foldx"]) / tmax
    assert close(evaluate(rules["E"], env, tmax - 1e-9), rate * 100.0)
    assert close(evaluate(rules["E"], env, tmax + 1e-9), -env["alpha"] * 100.0)
    assert evaluate(rules["M"], env, 0.5 * tmax) == 0.0


def test_day_zero_dose_is_an_initial_assignment_of_the_dose_target():
    model = cartkin.load_model("il10")
    sbml = parse(model, dose_per_kg=2e5)
    params = {q.get("id"): q for q in sbml.iterfind("s:listOfParameters/s:parameter", NS)}
    assert float(params["dose_per_kg"].get("value")) == 2e5
    assigned = {a.get("symbol"): a.find("m:math", NS)
                for a in sbml.iterfind("s:listOfInitialAssignments/s:initialAssignment", NS)}
    p = model.parameters | {"f_blood": 0.05, "dose_per_kg": 2e5}
    scale = compile_model(model).dose_scale(np.array([p[q] for q in model.parameter_names]))
    assert close(evaluate(assigned["N"], p, 0.0), 2e5 * scale)
    assert "N" not in {a.get("symbol") for a in parse(model).iterfind(
        "s:listOfInitialAssignments/s:initialAssignment", NS)}


def test_export_errors_are_one_line():
    with pytest.raises(cartkin.CartkinError, match="no dose input"):
        to_sbml(cartkin.load_model("liu2022"), dose_per_kg=1e5)
    with pytest.raises(cartkin.CartkinError, match="dose_per_kg"):
        to_sbml(cartkin.load_model("il10"), dose_per_kg=-1.0)
    import sympy as sp
    x = sp.Symbol("x")
    odd = cartkin.Model("odd", (cartkin.State("x"),), (cartkin.Parameter("k", 1.0),),
                        {"x": sp.gamma(x)})
    with pytest.raises(cartkin.CartkinError, match="gamma.*equation of x"):
        to_sbml(odd)


def test_heaviside_max_min_and_rationals_export_exactly():
    import sympy as sp
    x, y = sp.symbols("x y")
    k = sp.Symbol("k")
    rhs = sp.Heaviside(x - 1) * sp.Max(x, y, k) - sp.Min(x, 2 * y) / 3 + sp.sqrt(y) * x ** sp.Rational(3, 2) \
        + sp.exp(-k * cartkin.model.t) / (1 + x ** 2)
    model = cartkin.Model("funcs", (cartkin.State("x"), cartkin.State("y")), (cartkin.Parameter("k", 2.0),),
                          {"x": rhs, "y": -y})
    rules = {r.get("variable"): r.find("m:math", NS) for r in parse(model).find("s:listOfRules", NS)}
    f = sp.lambdify([x, y, k, cartkin.model.t], rhs)
    for xv in (0.5, 1.0, 3.0):
        env = {"x": xv, "y": 1.7, "k": 2.0}
        assert close(evaluate(rules["x"], env, 0.3), float(f(xv, 1.7, 2.0, 0.3)))


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "il10.xml"
    assert main(["export", "il10", "--sbml", "-o", str(out)]) == 0
    assert ET.parse(out).getroot().find("s:model", NS).get("id") == "il10_model"
    assert str(out) in capsys.readouterr().out
    assert main(["export", "liu2022", "--sbml"]) == 0
    assert ET.fromstring(capsys.readouterr().out).tag == "{%s}sbml" % NS["s"]
    assert main(["export", "il11", "--sbml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cartkin: error: unknown model 'il11'") and err.count("\n") == 1
    assert main(["export", "il10"]) == 2
    assert "--sbml" in capsys.readouterr().err


def test_libsbml_finds_no_errors():
    libsbml = pytest.importorskip("libsbml", reason="python-libsbml not installed (optional: pip install cartkin[bench])")
    for name in cartkin.list_models():
        doc = libsbml.readSBMLFromString(to_sbml(cartkin.load_model(name)))
        doc.checkConsistency()
        errors = [doc.getError(i).getMessage() for i in range(doc.getNumErrors())
                  if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
        assert (doc.getLevel(), doc.getVersion()) == (3, 2) and not errors, (name, errors)


@pytest.mark.parametrize("name", ["il10", "stein2019"])
def test_libroadrunner_reproduces_the_reference(name):
    roadrunner = pytest.importorskip("roadrunner", reason="libroadrunner not installed (optional: pip install cartkin[bench])")
    from reference import reference_solution
    model = cartkin.load_model(name)
    dose = 1e5 if model.dose else None
    r = roadrunner.RoadRunner(to_sbml(model, dose_per_kg=dose))
    r.integrator.relative_tolerance = 1e-10
    r.integrator.absolute_tolerance = 1e-12
    r.timeCourseSelections = [f"[{s}]" for s in model.state_names]
    times = np.linspace(0, 40, 9)
    y = np.asarray(r.simulate(0, 40, 9))
    bps = [model.parameters["Tmax"]] if name == "stein2019" else []
    ref = reference_solution(model, model.parameters, times, [(0.0, dose)] if dose else [], bps)
    # day 0: the reference reports the pre-dose state (cartkin's convention), the SBML run the dosed one;
    # error relative to max(|y|, atol/rtol) as in test_solvers
    scale = np.maximum(np.abs(ref[1:]), 1e-12 / 1e-10)
    assert np.max(np.abs(y[1:] - ref[1:]) / scale) < 1e-6


def test_to_sbml_is_one_function_reached_from_the_package_root():
    model = cartkin.load_model("il10")
    assert cartkin.to_sbml is to_sbml
    assert cartkin.to_sbml(model, dose_per_kg=1e5) == to_sbml(model, 1e5)
    assert "dose_per_kg" in to_sbml(model, 1e5) and "dose_per_kg" not in to_sbml(model)


def test_model_definition_does_not_import_the_exporter():
    import ast
    import pathlib
    source = pathlib.Path(cartkin.model.definition.__file__).read_text()
    imported = [node.module or "" for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in imported if "sbml" in m or "export" in m], imported
