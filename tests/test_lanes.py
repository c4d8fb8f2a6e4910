"""The lockstep kernel (cartkin.solve.lanes) against the scalar kernel: bit for bit, subject by subject.

Every comparison is exact (max abs difference 0.0, equal step counters, status codes and failure times):
each lane performs the scalar kernel's arithmetic in the same order. Small cases (few subjects, short
horizons) on this machine's lane count, so the kernels compiled here are those the other tests use.
"""
import numba
import numpy as np
import pytest

import cartkin
from cartkin.codegen import compile_model
from cartkin.codegen.lanes import compile_lanes, lane_width
from cartkin.errors import CartkinError
from cartkin.simulation import run
from cartkin.solve import status as st
from cartkin.solve.common import N_JAC
from cartkin.solve.events import AMOUNT, PER_KG, Events
from cartkin.solve.solver import Solver

W = lane_width()


def parameter_rows(model, n, seed, spread=0.4):
    """n parameter rows log-normal around the defaults (clipped to the bounds)."""
    rng = np.random.default_rng(seed)
    base = np.array([q.default for q in model.parameter_info])
    P = base * np.exp(spread * rng.standard_normal((n, base.size)))
    lower = np.array([q.lower for q in model.parameter_info])
    upper = np.array([q.upper for q in model.parameter_info])
    P = np.clip(P, lower, upper)
    if model.name == "il10":
        P[:, model.parameter_index("armored")] = np.arange(n) % 2  # both products
    return P


def doses(times, amounts, kind=PER_KG, target=0):
    """Infusions at the given days: per kg (the model's dose input), or AMOUNTs added to state `target`."""
    k = len(times)
    return Events(np.asarray(times, dtype=float), np.asarray(amounts, dtype=float),
                  np.full(k, kind, dtype=np.int64), np.full(k, target, dtype=np.int64))


def solve_both(model, P, times, events, **solver):
    scalar = run.solve_subjects(model, P, times, events, Solver(lanes=1, **solver))
    lanes = run.solve_subjects(model, P, times, events, Solver(lanes=W, **solver))
    return scalar, lanes


def assert_identical(scalar, lanes):
    out, _, codes, t_fail, counters = scalar
    out_l, _, codes_l, t_fail_l, counters_l = lanes
    np.testing.assert_array_equal(codes_l, codes)
    np.testing.assert_array_equal(counters_l, counters)
    assert np.array_equal(t_fail_l, t_fail, equal_nan=True)
    assert np.array_equal(np.isnan(out_l), np.isnan(out))
    finite = ~np.isnan(out)
    assert np.max(np.abs(out_l[finite] - out[finite])) == 0.0


@pytest.mark.parametrize("name", ["il10", "liu2022", "stein2019"])
def test_lane_rhs_equals_scalar_rhs_bit_for_bit(name):
    model = cartkin.load_model(name)
    scalar = compile_model(model)
    lanes = compile_lanes(model, W)
    n = model.n_states()
    rng = np.random.default_rng(7)
    P = parameter_rows(model, W, seed=3)
    y0 = np.empty(n)
    scalar.initial(P[0], y0)
    Y = (np.abs(y0) + 1.0) * np.exp(rng.standard_normal((W, n)))
    T = rng.uniform(0.0, 20.0, W)
    S = rng.uniform(0.0, 20.0, W)  # segment midpoints: both sides of stein2019's Tmax (~9.3)
    OUT = np.empty(n * W)
    F = np.empty(lanes.N_CALLS * W)
    lanes.rhs_lanes(T, Y.T.ravel().copy(), P.T.ravel().copy(), S, OUT, F, W)
    ref = np.empty(n)
    for lane in range(W):
        scalar.rhs(T[lane], Y[lane].copy(), P[lane].copy(), S[lane], ref)
        assert np.array_equal(OUT.reshape(n, W)[:, lane], ref), lane
    if name == "stein2019":
        tmax = P[:, model.parameter_index("Tmax")]
        assert (S < tmax).any() and (S >= tmax).any()


@pytest.mark.parametrize("method", ["auto", "dopri5"])
def test_il10_lockstep_equals_scalar(method):
    """Doses at different days per subject, horizons that end before and after the switch to Rodas4, a
    step budget some subjects exhaust, a subject with a non-finite parameter; 2W + 3 subjects."""
    model = cartkin.load_model("il10")
    n = 2 * W + 3
    P = parameter_rows(model, n, seed=11)
    P[4, model.parameter_index("k_I")] = np.nan  # BAD_INPUT, as the scalar kernel reports it
    times = [np.linspace(0.0, 20.0 + 6.0 * i, 9 + i % 4) for i in range(n)]
    events = [doses([0.0, 1.0 + 0.7 * i] if i % 3 else [0.5 * i], [1e5, 2e5] if i % 3 else [3e5]) for i in range(n)]
    kw = dict(method=method, rtol=1e-4, atol=1e-6)
    full = run.solve_subjects(model, P, times, events, Solver(lanes=1, **kw))
    steps = full[4][:, 0]
    budget = int(np.median(steps[full[2] == st.SUCCESS]))
    scalar, lanes = solve_both(model, P, times, events, max_steps=budget, **kw)
    assert_identical(scalar, lanes)
    codes, counters = scalar[2], scalar[4]
    assert {st.SUCCESS, st.MAX_STEPS, st.BAD_INPUT} <= set(codes.tolist())
    if method == "auto":
        assert (counters[codes == st.SUCCESS, N_JAC] > 0).any()   # finished with Rodas4
        assert (counters[codes == st.SUCCESS, N_JAC] == 0).any()  # stayed with dopri5


def test_liu2022_and_stein2019_lockstep_equal_scalar():
    """liu2022 with extra doses on different days; stein2019 with its switch at Tmax (a breakpoint, and the
    segment midpoint ts in each lane's right-hand side) and a negative-state failure in every other subject."""
    liu = cartkin.load_model("liu2022")
    n = W + 3
    P = parameter_rows(liu, n, seed=5)
    times = [np.linspace(0.0, 60.0, 13)] * n
    nta = liu.state_index("nTA")
    events = [doses([0.0, 0.25 * i, 7.0 + i], [1.0, 0.5, 2.0], AMOUNT, nta) for i in range(n)]  # extra CAR T
    assert_identical(*solve_both(liu, P, times, events))
    stein = cartkin.load_model("stein2019")
    n = 2 * W - 1
    P = parameter_rows(stein, n, seed=6)
    times = [np.linspace(0.0, 40.0, 21)] * n  # Tmax (a breakpoint and the ts switch) inside the horizon
    # odd subjects lose more E than they have on day 15 + i: the negative-state check ends them
    e = stein.state_index("E")
    events = [doses([15.0 + i], [-1e9], AMOUNT, e) if i % 2 else Events.empty() for i in range(n)]
    scalar, lanes = solve_both(stein, P, times, events)
    assert_identical(scalar, lanes)
    assert (scalar[2][0::2] == st.SUCCESS).all()
    assert (scalar[2][1::2] == st.NEGATIVE_STATE).all()


def test_same_numbers_for_any_threads_and_chunks(monkeypatch):
    """simulate_batch with one thread and one chunk, and with two threads and chunks of 8 (the last, of
    3 subjects, solved by the scalar kernel): the same numbers, and those of Solver(lanes=1)."""
    model = cartkin.load_model("il10")
    n = 19
    P = parameter_rows(model, n, seed=13)
    times = np.linspace(0.0, 30.0, 7)
    regimen = cartkin.Regimen.single(1e5)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cartkin.simulate_batch(model, regimen, times, P, progress=False)
        ref = cartkin.simulate_batch(model, regimen, times, P, progress=False, solver=Solver(lanes=1))
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        monkeypatch.setattr(run, "MIN_CHUNK", 8)
        two = cartkin.simulate_batch(model, regimen, times, P, progress=False)
    finally:
        numba.set_num_threads(threads)
    for other in (two, ref):
        assert np.array_equal(one.states, other.states)
        assert np.array_equal(one.counters, other.counters)
        assert np.array_equal(one.codes, other.codes)


@pytest.mark.parametrize("lanes", [0, 3, 8.0, True, "8"])
def test_bad_lane_counts_are_refused(lanes):
    with pytest.raises(CartkinError, match="lanes must be"):
        Solver(lanes=lanes)
