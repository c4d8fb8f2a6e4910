"""The lockstep kernel (cartkin.solve.lanes) against the scalar kernel: bit for bit, subject by subject (and
its W-lane Jacobian, ∂f/∂t and LU against the scalar ones, lane by lane).

Every comparison is exact (max abs difference 0.0, equal step counters, status codes and failure times):
each lane performs the scalar kernel's arithmetic in the same order. Small cases (few subjects, short
horizons) on this machine's lane count, so the kernels compiled here are those the other tests use.
"""
import types

import numba
import numpy as np
import pytest

import cartkin
from cartkin.codegen import compile_model
from cartkin.codegen.lanes import compile_lanes, lane_width
from cartkin.errors import CartkinError
from cartkin.simulation import run
from cartkin.solve import status as st
from cartkin.solve.common import N_COUNTERS, N_JAC
from cartkin.solve.events import AMOUNT, PER_KG, Events, EventTable
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


def lane_inputs(model, scalar, seed, parameter_seed):
    """W lanes of parameters (one row each), states (one row each), times and segment midpoints."""
    rng = np.random.default_rng(seed)
    P = parameter_rows(model, W, seed=parameter_seed)
    y0 = np.empty(model.n_states())
    scalar.initial(P[0], y0)
    Y = (np.abs(y0) + 1.0) * np.exp(rng.standard_normal((W, model.n_states())))
    T = rng.uniform(0.0, 20.0, W)
    S = rng.uniform(0.0, 20.0, W)  # segment midpoints: both sides of stein2019's Tmax (~9.3)
    return P, Y, T, S


@pytest.mark.parametrize("name", ["il10", "liu2022", "stein2019"])
def test_lane_rhs_equals_scalar_rhs_bit_for_bit(name):
    model = cartkin.load_model(name)
    scalar = compile_model(model)
    lanes = compile_lanes(model, W)
    n = model.n_states()
    P, Y, T, S = lane_inputs(model, scalar, 7, 3)
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


@pytest.mark.parametrize("value", [1, 0, "yes", 1.0])
def test_bad_stiff_lanes_are_refused(value):
    with pytest.raises(CartkinError, match="stiff_lanes must be None, True or False"):
        Solver(stiff_lanes=value)


# ---- the W-lane Rodas4 pool: lane Jacobian, ∂f/∂t and LU, and the kernel with stiff subjects ------------------

@pytest.mark.parametrize("name", ["il10", "liu2022", "stein2019"])
def test_lane_jacobian_and_dfdt_equal_scalar_bit_for_bit(name):
    model = cartkin.load_model(name)
    scalar = compile_model(model)
    lanes = compile_lanes(model, W)
    n = model.n_states()
    P, Y, T, S = lane_inputs(model, scalar, 8, 4)
    J = np.full(n * n * W, np.nan)  # structural zeros must be written too
    FT = np.empty(n * W)
    F = np.empty(lanes.N_CALLS * W)
    args = (T, Y.T.ravel().copy(), P.T.ravel().copy(), S)
    lanes.jac_lanes(*args, J, F, W)
    lanes.dfdt_lanes(*args, FT, F, W)
    ref_j = np.empty((n, n))
    ref_t = np.empty(n)
    for lane in range(W):
        scalar.jac(T[lane], Y[lane].copy(), P[lane].copy(), S[lane], ref_j)
        scalar.dfdt(T[lane], Y[lane].copy(), P[lane].copy(), S[lane], ref_t)
        assert np.array_equal(J.reshape(n, n, W)[:, :, lane], ref_j), lane
        assert np.array_equal(FT.reshape(n, W)[:, lane], ref_t), lane


def test_lane_lu_equals_scalar_lu_bit_for_bit():
    """(fac I − J) factored and solved per lane as the scalar lu_factor / lu_solve do: same factors, pivots
    and solutions, lanes pivoting differently, a singular lane and a lane with a NaN flagged as lu_factor
    flags them."""
    model = cartkin.load_model("il10")
    scalar = compile_model(model)
    lanes = compile_lanes(model, W)
    n = model.n_states()
    rng = np.random.default_rng(9)
    J = rng.standard_normal((W, n, n)) * np.exp(2.0 * rng.standard_normal((W, n, n)))
    FAC = np.exp(rng.uniform(-3.0, 3.0, W))
    FAC[0] = 1e3  # diagonally dominant: no row exchange
    J[1] = np.eye(n)[::-1] * 50.0  # an exchange at every step
    FAC[1] = 1e-3
    J[2] = 0.0  # singular: fac I − J = 0
    FAC[2] = 0.0
    J[3, 4, 2] = np.nan
    A = np.zeros(n * n * W + n * W + W)
    lanes.lu_factor_lanes(np.ascontiguousarray(J.transpose(1, 2, 0)).ravel(), FAC, A, W)
    B = rng.standard_normal((W, n))
    X = np.ascontiguousarray(B.T).ravel()
    lanes.lu_solve_lanes(A, X, W)
    factors = A[:n * n * W].reshape(n, n, W)
    pivots = A[n * n * W:(n * n + n) * W].reshape(n, W)
    regular = A[(n * n + n) * W:]
    moved = []
    for lane in range(W):
        M = -J[lane]
        M[np.diag_indices(n)] += FAC[lane]
        piv = np.zeros(n, dtype=np.int64)
        ok = scalar.lu_factor(M, piv)
        assert regular[lane] == (1.0 if ok else 0.0), lane
        if lane in (2, 3):
            assert not ok
            continue
        assert ok, lane
        assert np.array_equal(factors[:, :, lane], M), lane
        assert np.array_equal(pivots[:, lane], piv.astype(float)), lane
        b = B[lane].copy()
        scalar.lu_solve(M, piv, b)
        assert np.array_equal(X.reshape(n, W)[:, lane], b), lane
        moved.append((piv != np.arange(n)).any())
    assert not moved[0] and moved[1]  # lanes with and without row exchanges


def test_il10_stiff_pool_equals_scalar():
    """il10 in auto mode at rtol 1e-4, where every subject turns stiff: the Rodas4 pool against the scalar
    kernel and against the lockstep kernel with scalar Rodas4 tails, bit for bit; doses on different days
    (after the switch too), a step budget some subjects exhaust in their stiff part, a non-finite parameter,
    2W + 3 subjects."""
    model = cartkin.load_model("il10")
    n = 2 * W + 3
    P = parameter_rows(model, n, seed=17, spread=0.2)
    P[5, model.parameter_index("k_I")] = np.inf
    times = [np.linspace(0.0, 70.0 + 5.0 * i, 6 + i % 3) for i in range(n)]
    events = [doses([0.0, 50.0 + 2.0 * i] if i % 2 else [0.0], [1e5, 1e5] if i % 2 else [2e5]) for i in range(n)]
    kw = dict(method="auto", rtol=1e-4, atol=1e-6)
    full = run.solve_subjects(model, P, times, events, Solver(lanes=1, **kw))
    ok = full[2] == st.SUCCESS
    assert (full[4][ok, N_JAC] > 0).all()  # every solved subject switched to Rodas4
    budget = int(np.median(full[4][ok, 0]))
    scalar, pool = solve_both(model, P, times, events, max_steps=budget, **kw)
    assert_identical(scalar, pool)
    tails = run.solve_subjects(model, P, times, events, Solver(lanes=W, max_steps=budget, stiff_lanes=False, **kw))
    assert_identical(scalar, tails)
    codes, counters = scalar[2], scalar[4]
    assert ((codes == st.MAX_STEPS) & (counters[:, N_JAC] > 0)).any()  # failed in the stiff part
    assert ((codes == st.SUCCESS) & (counters[:, N_JAC] > 0)).any()
    assert codes[5] == st.BAD_INPUT


def test_stiff_pool_runs_and_is_thread_and_chunk_independent(monkeypatch):
    """The kernel's own counters show the pool stepping; simulate_batch on 1 thread in one chunk and on 2
    threads in chunks of 8 gives the scalar kernel's numbers for subjects that turn stiff."""
    model = cartkin.load_model("il10")
    n = 21
    P = parameter_rows(model, n, seed=19, spread=0.2)
    times = np.linspace(0.0, 60.0, 5)
    regimen = cartkin.Regimen.single(1e5)
    solver = Solver(rtol=1e-4, atol=1e-6)
    kernel = compile_lanes(model, W).batch_solve_lanes_stiff
    out = np.empty((n * times.size, model.n_states()))
    codes = np.zeros(n, dtype=np.int64)
    counters = np.zeros((n, N_COUNTERS), dtype=np.int64)
    usage = np.zeros(4, dtype=np.int64)
    kernel(solver.mode, P, np.tile(times, n), np.arange(n + 1, dtype=np.int64) * times.size,
           tuple(EventTable.repeat(regimen.events(model), n)), solver.options, out, codes, np.zeros(n), counters,
           usage)
    assert usage[2] > 0 and 0 < usage[3] <= usage[2]  # Rodas4 lane-steps attempted / that advanced a subject
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cartkin.simulate_batch(model, regimen, times, P, progress=False, solver=solver)
        ref = cartkin.simulate_batch(model, regimen, times, P, progress=False,
                                     solver=Solver(rtol=1e-4, atol=1e-6, lanes=1))
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        monkeypatch.setattr(run, "MIN_CHUNK", 8)
        two = cartkin.simulate_batch(model, regimen, times, P, progress=False, solver=solver)
    finally:
        numba.set_num_threads(threads)
    assert (ref.counters[:, N_JAC] > 0).sum() > n // 2  # most turned stiff
    for other in (one, two):
        assert np.array_equal(ref.states, other.states, equal_nan=True)
        assert np.array_equal(ref.counters, other.counters)
        assert np.array_equal(ref.codes, other.codes)


def test_the_rodas4_pool_kernel_is_used_from_rtol_1e_5(monkeypatch):
    """The default picks the kernel with the Rodas4 pool at loose tolerances only (where most subjects turn
    stiff), the one without it at the default rtol 1e-6 (no compile of the pool there); Solver(stiff_lanes=...)
    forces either."""
    model = cartkin.load_model("liu2022")
    real = run.compile_lanes(model, W)
    used = []

    def recording(name):
        def kernel(*args):
            used.append(name)
            return real.batch_solve_lanes(*args)  # liu2022 never turns stiff: the same numbers, no pool compiled
        return kernel
    fake = types.SimpleNamespace(batch_solve_lanes=recording("plain"), batch_solve_lanes_stiff=recording("pool"))
    monkeypatch.setattr(run, "compile_lanes", lambda model, lanes: fake)
    P = parameter_rows(model, W, seed=3, spread=0.1)
    times = np.linspace(0.0, 20.0, 3)
    for rtol, force, method, expected in ((1e-6, None, "auto", "plain"), (1e-4, None, "auto", "pool"),
                                          (1e-5, None, "auto", "pool"), (1e-6, True, "auto", "pool"),
                                          (1e-4, False, "auto", "plain"), (1e-4, None, "dopri5", "plain")):
        used.clear()
        cartkin.simulate_batch(model, None, times, P, progress=False,
                               solver=Solver(method, rtol=rtol, atol=rtol * 1e-3, lanes=W, stiff_lanes=force))
        assert used == [expected], (rtol, force, method, used)
