"""One `Solver` object (method, tolerances, step budget) is accepted by every entry point."""
import numpy as np
import pytest

import cartkin
from cartkin import CartkinError, Solver
from cartkin.scenario import Scenario

TIMES = np.linspace(0, 60, 13)
RODAS = Solver("rodas", rtol=1e-7, atol=1e-10)


def test_simulate_takes_a_solver_or_its_shorthands_never_both():
    model = cartkin.load_model("liu2022")
    with_object = cartkin.simulate(model, None, TIMES, solver=RODAS)
    with_keywords = cartkin.simulate(model, None, TIMES, method="rodas", rtol=1e-7, atol=1e-10)
    assert with_object.solver == RODAS == with_keywords.solver
    np.testing.assert_array_equal(with_object.states, with_keywords.states)
    other = cartkin.simulate(model, None, TIMES, solver=Solver("dopri5", rtol=1e-7, atol=1e-10))
    assert not np.array_equal(other.states, with_object.states)  # the method really changed
    with pytest.raises(CartkinError, match="either solver= or rtol="):
        cartkin.simulate(model, None, TIMES, solver=RODAS, rtol=1e-3)
    with pytest.raises(CartkinError, match="solver must be a cartkin.Solver"):
        cartkin.simulate(model, None, TIMES, solver="rodas")


def test_batch_and_summaries_use_the_solver():
    model = cartkin.load_model("liu2022")
    P = {"rTA0": np.array([1.2, 1.6, 2.0])}
    batch = cartkin.simulate_batch(model, None, TIMES, P, RODAS, progress=False)
    assert batch.solver == RODAS
    summary = cartkin.simulate_summaries(model, None, TIMES, P, solver=RODAS, progress=False)
    np.testing.assert_array_equal(summary.values["cmax"], batch.observable("nTA").max(axis=1))


def test_fits_record_the_solver_they_were_given():
    model = cartkin.load_model("liu2022")
    truth = {"rTA0": 1.5, "lTA0": 0.12}
    res = cartkin.simulate(model, None, TIMES[1:], truth, rtol=1e-10, atol=1e-12)
    data = cartkin.data.Dataset.from_arrays(model, ["a"] * 12, TIMES[1:], res.observable("nTA"),
                                            ["nTA"] * 12)
    result = cartkin.fit(model, data, estimate=["rTA0", "lTA0"], sigma={"sigma_nTA": 0.1}, starts=1,
                         solver=RODAS, progress=False)
    assert result.problem.solver == RODAS
    default = cartkin.fit(model, data, estimate=["rTA0", "lTA0"], sigma={"sigma_nTA": 0.1}, starts=1,
                          progress=False)
    assert default.problem.solver.rtol == 1e-8  # FIT_SOLVER: tighter than simulations' default
    np.testing.assert_allclose(result.fits[0].estimates, default.fits[0].estimates, rtol=1e-4)


def test_scenario_files_name_the_method():
    base = {"scenario": {"name": "s", "model": "liu2022", "horizon_days": 30, "method": "rodas", "rtol": 1e-7},
            "population": {"n": 4, "seed": 1},
            "outcomes": {"exposure": {"observable": "nTA", "limit": 0.2}},
            "arms": [{"name": "one", "regimen": {"none": True}}]}
    scenario = Scenario.from_dict(base)
    assert scenario.solver == Solver("rodas", rtol=1e-7, atol=1e-9)
    comparison = cartkin.compare(scenario, progress=False)
    assert comparison.arms[0].ok.all()
    with pytest.raises(CartkinError, match="scenario: unknown method 'rk4'"):
        Scenario.from_dict({**base, "scenario": {**base["scenario"], "method": "rk4"}})
