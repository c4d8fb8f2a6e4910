"""No silent wrong answers: loose tolerances are refused, negative amounts fail the solve, and random
il10 subjects either match scipy Radau or report failure."""
import numpy as np
import pytest

import cartkin
from cartkin.solve import status
from reference import reference_solution

DOSE = 1e5


def test_loose_tolerances_are_refused_with_a_one_line_message():
    for option, value in (("rtol", 0.1), ("atol", 1.0)):
        with pytest.raises(cartkin.CartkinError) as info:
            cartkin.simulate("il10", cartkin.Regimen.single(DOSE), [0, 10], **{option: value})
        assert str(info.value).startswith(f"{option} {value:g} is too loose: at most")
        assert "\n" not in str(info.value)
    assert cartkin.Solver(rtol=1e-2, atol=1e-2).rtol == 1e-2


def test_builtin_model_states_are_nonnegative_and_registry_names_the_methods():
    for name in cartkin.list_models():
        assert all(s.nonnegative for s in cartkin.load_model(name).states)
    assert set(cartkin.solve.METHODS) == {"dopri5", "rodas"}
    assert cartkin.solve.METHODS["rodas"].stiff and not cartkin.solve.METHODS["dopri5"].stiff
    with pytest.raises(cartkin.CartkinError, match="auto, dopri5, rodas"):
        cartkin.Solver(method="euler")


@pytest.mark.parametrize("method", ["auto", "dopri5", "rodas"])
def test_a_state_driven_below_zero_fails_the_solve(method):
    """r_L 24.9, K_k 3.66, L0 32.7, WT 0.446: at default tolerances auto and rodas used to return
    L = -4 cells/µL with success. Now: right (L >= -tolerance) or an honest failure: NEGATIVE_STATE, or
    MAX_STEPS for the explicit method on this stiff subject (with L_max 1e5 the leukaemia grows unchecked)."""
    model = cartkin.load_model("il10")
    times = np.linspace(0, 365, 1461)
    res = cartkin.simulate(model, cartkin.Regimen.single(DOSE), times,
                           {"r_L": 24.9, "K_k": 3.66, "L0": 32.7, "WT": 0.446}, method=method)
    L = res.states[:, model.state_index("L")]
    if res.status.ok:
        assert np.nanmin(L) >= -1e-3
    elif res.status.code == status.MAX_STEPS:
        assert method == "dopri5"  # the stiff methods must not run out of steps here
    else:
        assert res.status.code == status.NEGATIVE_STATE
        assert "went below zero" in res.status.message and "at t =" in res.status.message


def draws(model, rng, n):
    """Log-uniform within /10 .. x10 of the defaults, clipped to the bounds; armored 0 or 1."""
    base = np.array([q.default for q in model.parameter_info])
    lower = np.array([q.lower for q in model.parameter_info])
    upper = np.array([q.upper for q in model.parameter_info])
    P = np.clip(base * np.exp(rng.uniform(np.log(0.1), np.log(10.0), (n, base.size))), lower, upper)
    P[:, model.parameter_index("armored")] = rng.integers(0, 2, n)
    return P


@pytest.mark.parametrize("method", ["auto", "dopri5", "rodas"])
def test_random_subjects_are_right_or_reported(method):
    model = cartkin.load_model("il10")
    rng = np.random.default_rng(11)
    P = draws(model, rng, 30)
    times = np.linspace(0, 120, 25)
    res = cartkin.simulate_batch(model, cartkin.Regimen.single(DOSE), times, P, method=method, progress=False)
    rtol, atol = 1e-6, 1e-9
    for i, row in enumerate(P):
        if not res.ok[i]:
            assert res.codes[i] != status.SUCCESS and np.isfinite(res.failed_at[i])
            continue
        y = res.states[i]
        ref = reference_solution(model, dict(zip(model.parameter_names, row)), times, [(0.0, DOSE)],
                                 rtol=1e-10, atol=1e-12)
        assert y.min() >= -(10 * atol + rtol * np.abs(ref).max()), (i, y.min())
        # 1e-4 relative, with an absolute floor of 1e-3 (cells/µL, pg/mL) for states near zero
        assert np.max(np.abs(y - ref) / np.maximum(np.abs(ref), 1e-3)) <= 1e-4, i
