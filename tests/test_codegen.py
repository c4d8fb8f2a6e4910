"""Generated numba functions agree with the symbolic definition (sympy lambdify) at random points."""
import numpy as np
import pytest
import sympy as sp

import cartkin
from cartkin.codegen import compile_model, generate_source
from cartkin.model.definition import t as T

MODELS = cartkin.list_models()


def random_point(model, rng):
    p = np.array([q.default for q in model.parameter_info]) * rng.uniform(0.5, 1.5, model.n_parameters())
    upper = np.array([q.upper for q in model.parameter_info])
    p = np.minimum(p, upper)
    y = rng.uniform(0.1, 2000.0, model.n_states())
    return rng.uniform(0, 40), y, p


@pytest.mark.parametrize("name", MODELS)
def test_rhs_and_jacobians_match_lambdify(name):
    model = cartkin.load_model(name)
    mod = compile_model(model, derivatives=True)  # the solvers' module plus the parameter derivatives
    ys = [sp.Symbol(s) for s in model.state_names]
    ps = [sp.Symbol(q) for q in model.parameter_names]
    f = sp.Matrix([model.equations[s] for s in model.state_names])
    f_ref = sp.lambdify([T, ys, ps], list(f), "numpy")
    j_ref = sp.lambdify([T, ys, ps], f.jacobian(ys), "numpy")
    jp_ref = sp.lambdify([T, ys, ps], f.jacobian(ps), "numpy")
    g = sp.Matrix([o.expression for o in model.observable_info])
    g_ref = sp.lambdify([T, ys, ps], list(g), "numpy")
    gy_ref = sp.lambdify([T, ys, ps], g.jacobian(ys), "numpy")
    gp_ref = sp.lambdify([T, ys, ps], g.jacobian(ps), "numpy")
    y0_ref = sp.lambdify([ps], sp.Matrix([sp.sympify(model.initial.get(s, 0)) for s in model.state_names]).jacobian(ps), "numpy")
    rng = np.random.default_rng(7)
    ns, npar, nobs = model.n_states(), model.n_parameters(), len(model.observables)
    for _ in range(25):
        t, y, p = random_point(model, rng)
        out = np.empty(ns)
        mod.rhs(t, y, p, t, out)
        np.testing.assert_allclose(out, f_ref(t, y, p), rtol=1e-12, atol=1e-12)
        J = np.empty((ns, ns))
        mod.jac(t, y, p, t, J)
        np.testing.assert_allclose(J, np.array(j_ref(t, y, p), float), rtol=1e-12, atol=1e-12)
        Jp = np.empty((ns, npar))
        mod.dfdp(t, y, p, t, Jp)
        np.testing.assert_allclose(Jp, np.array(jp_ref(t, y, p), float), rtol=1e-12, atol=1e-12)
        obs = np.empty(nobs)
        mod.observe(t, y, p, obs)
        np.testing.assert_allclose(obs, g_ref(t, y, p), rtol=1e-12)
        Gy = np.empty((nobs, ns))
        mod.dobserve_dy(t, y, p, Gy)
        np.testing.assert_allclose(Gy, np.array(gy_ref(t, y, p), float), rtol=1e-12, atol=1e-14)
        Gp = np.empty((nobs, npar))
        mod.dobserve_dp(t, y, p, Gp)
        np.testing.assert_allclose(Gp, np.array(gp_ref(t, y, p), float), rtol=1e-12, atol=1e-14)
        D0 = np.empty((ns, npar))
        mod.dinitial_dp(p, D0)
        np.testing.assert_allclose(D0, np.array(y0_ref(p), float), rtol=1e-12, atol=1e-14)


def test_jacobian_matches_finite_differences():
    """A check independent of sympy's differentiation: central differences of the generated RHS."""
    model = cartkin.load_model("il10")
    mod = compile_model(model)
    rng = np.random.default_rng(3)
    t, y, p = random_point(model, rng)
    n = model.n_states()
    J = np.empty((n, n))
    mod.jac(t, y, p, t, J)
    fp, fm = np.empty(n), np.empty(n)
    for j in range(n):
        h = 1e-6 * max(1.0, abs(y[j]))
        yp, ym = y.copy(), y.copy()
        yp[j] += h
        ym[j] -= h
        mod.rhs(t, yp, p, t, fp)
        mod.rhs(t, ym, p, t, fm)
        np.testing.assert_allclose(J[:, j], (fp - fm) / (2 * h), rtol=1e-5, atol=1e-7)


def test_generated_source_is_deterministic_and_names_the_model():
    model = cartkin.load_model("liu2022")
    a, b = generate_source(model), generate_source(model)
    assert a == b
    assert "MODEL_NAME = 'liu2022'" in a


def test_piecewise_conditions_use_segment_time():
    """stein2019 switches at Tmax by the segment time ts, so a step ending at Tmax stays on one branch."""
    model = cartkin.load_model("stein2019")
    mod = compile_model(model)
    p = np.array([q.default for q in model.parameter_info])
    y = np.array([100.0, 0.0])
    out = np.empty(2)
    tmax = model.parameters["Tmax"]
    mod.rhs(tmax, y, p, tmax - 1.0, out)      # time at Tmax, segment before it: still expanding
    assert out[0] > 0
    mod.rhs(tmax, y, p, tmax + 1.0, out)      # segment after: contracting
    assert out[0] < 0


def test_default_module_has_only_the_kernels_the_solvers_use():
    mod = compile_model(cartkin.load_model("il10"))
    for used in ("rhs", "jac", "dfdt", "initial", "observe", "dose_scale", "breakpoints", "batch_solve"):
        assert callable(getattr(mod, used))
    for unused in ("dfdp", "dinitial_dp", "dobserve_dy", "dobserve_dp", "ddose_scale_dp"):
        assert not hasattr(mod, unused)


def test_a_cached_module_loads_without_generating_source(monkeypatch):
    from cartkin.codegen import generate
    model = cartkin.load_model("il10")
    first = compile_model(model)
    monkeypatch.setattr(generate, "_LOADED", {})

    def refuse(*args, **kwargs):
        raise AssertionError("generate_source called for a cached model")
    monkeypatch.setattr(generate, "generate_source", refuse)
    again = compile_model(model)
    assert again is not first and again.MODEL_NAME == "il10"
    assert generate.module_key(model) in again.__name__


def test_model_is_immutable():
    model = cartkin.load_model("il10")
    fingerprint = model.fingerprint()
    with pytest.raises(TypeError):
        model.equations["L"] = sp.Integer(0)
    with pytest.raises(TypeError):
        model.initial["L"] = sp.Integer(0)
    with pytest.raises(AttributeError):
        model.name = "other"
    assert model.fingerprint() == fingerprint
    y, r = sp.symbols("y r")
    equations = {"y": -r * y}
    small = cartkin.Model("decay", (cartkin.State("y"),), (cartkin.Parameter("r", 1.0),), equations)
    equations["y"] = r * y  # the caller's dict is copied, not shared
    assert small.equations["y"] == -r * y


def test_models_pickle_as_their_constructor_arguments():
    """Plain pickle sends any model to another process (any executor): a built-in one as its name and
    changed defaults, another as its fields; the copy is equal and has the same fingerprint (so the same
    compiled code)."""
    import pickle
    il10 = cartkin.load_model("il10")
    y, r = sp.symbols("y r")
    small = cartkin.Model("decay", (cartkin.State("y"),), (cartkin.Parameter("r", 1.0),), {"y": -r * y},
                          initial={"y": sp.Integer(3)}, observable_info=(cartkin.Observable("Y", 2 * y),))
    copy_of_il10 = cartkin.Model(**{f: getattr(il10, f) for f in ("name", "states", "parameter_info", "equations",
                                                                  "observable_info", "initial", "dose")}
                                 | {"description": "not the registry's"})
    for model in (il10, il10.with_defaults(rho=2.5, L0=50.0), small, copy_of_il10):
        data = pickle.dumps(model)
        back = pickle.loads(data)
        assert back == model and back.fingerprint() == model.fingerprint() and back.parameters == model.parameters
        assert back.description == model.description
    assert pickle.loads(pickle.dumps(il10)) is il10  # the receiver's own built-in model
    assert len(pickle.dumps(il10.with_defaults(rho=2.5))) < 200 < len(pickle.dumps(copy_of_il10))


def test_a_freshly_compiled_model_and_the_cached_one_give_identical_numbers(tmp_path):
    """The process that compiles a model and every later one (loading numba's cache, as Dask workers do)
    must produce the same bits: no fast-math reordering may differ between the two."""
    import subprocess
    import sys
    script = (
        "import hashlib, numpy as np, cartkin\n"
        "m = cartkin.load_model('liu2022')\n"
        "r = cartkin.simulate_batch(m, None, np.linspace(0, 60, 121), {'rTA0': np.linspace(1, 2, 8)}, progress=False)\n"
        "print(hashlib.sha256(r.states.tobytes()).hexdigest())\n")
    env = {**__import__("os").environ, "CARTKIN_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert list((tmp_path / "cache" / "generated").glob("cartkin_gen_liu2022_*.py"))  # the first run compiled
    assert runs[0].stdout.strip() == runs[1].stdout.strip()
