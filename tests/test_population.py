"""Virtual populations: reproducible, thread-independent, with the requested variability."""
import numba
import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.population import Empirical, LogNormal, Normal, Population, Uniform, Variability


def make(n=2000, seed=7, **kw):
    return Population("il10", n, seed=seed,
                      variability=Variability(cv={"rho": 40, "kappa": 30}, correlation={("rho", "kappa"): 0.5}),
                      covariates={"L0": LogNormal(1000, 150), "WT": Normal(55, 20, 12, 120)}, **kw)


def test_same_seed_same_patients_and_other_seed_differs():
    np.testing.assert_array_equal(make().parameters(), make().parameters())
    assert not np.array_equal(make().parameters(), make(seed=8).parameters())


def test_a_subject_does_not_depend_on_population_size_or_threads():
    big = make(n=1000).parameters()
    small = make(n=10).parameters()
    np.testing.assert_array_equal(big[:10], small)
    np.testing.assert_array_equal(big[500:510], make(n=1000).parameters(500, 10))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = make(n=1000).parameters()
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(big, one)


def test_variability_and_correlation_are_recovered():
    pop = make(n=20000)
    P = pop.parameters()
    m = pop.model
    log_rho = np.log(P[:, m.parameter_index("rho")])
    log_kappa = np.log(P[:, m.parameter_index("kappa")])
    assert np.std(log_rho) == pytest.approx(np.sqrt(np.log(1 + 0.4 ** 2)), rel=0.03)
    assert np.corrcoef(log_rho, log_kappa)[0, 1] == pytest.approx(0.5, abs=0.03)
    assert np.median(P[:, m.parameter_index("L0")]) == pytest.approx(1000, rel=0.05)
    wt = P[:, m.parameter_index("WT")]
    assert wt.min() >= 12 and wt.max() <= 120
    # parameters without variability keep their defaults
    assert np.all(P[:, m.parameter_index("delta_X")] == m.parameters["delta_X"])


def test_adding_a_covariate_does_not_change_random_effects():
    a = Population("il10", 100, seed=1, variability=Variability(cv={"rho": 40})).parameters()
    b = Population("il10", 100, seed=1, variability=Variability(cv={"rho": 40}),
                   covariates={"L0": Uniform(100, 2000)}).parameters()
    j = cartkin.load_model("il10").parameter_index("rho")
    np.testing.assert_array_equal(a[:, j], b[:, j])


def test_empirical_covariates_resample_existing_values(tmp_path):
    path = tmp_path / "cov.csv"
    path.write_text("id,weight\n1,20\n2,35.5\n3,80\n")
    pop = Population("il10", 500, seed=3, covariates={"WT": Empirical.from_csv(path, "weight")})
    wt = pop.parameters()[:, pop.model.parameter_index("WT")]
    assert set(np.unique(wt)) == {20.0, 35.5, 80.0}
    with pytest.raises(CartkinError, match="no column 'kg'"):
        Empirical.from_csv(path, "kg")
    path.write_text("weight\n20\nheavy\n")
    with pytest.raises(CartkinError, match="line 3"):
        Empirical.from_csv(path, "weight")


@pytest.mark.parametrize("build, message", [
    (lambda: Population("il10", 10, variability=Variability(cv={"rhoo": 10})), "unknown parameter 'rhoo'"),
    (lambda: Variability(cv={"rho": -1}), ">= 0"),
    (lambda: Variability(cv={"rho": 10, "kappa": 10}, correlation={("rho", "kappa"): 1.5}), "between -1 and 1"),
    (lambda: Population("il10", 0), "positive integer"),
    (lambda: Population("nomodel", 10), "unknown model"),
])
def test_bad_population_input(build, message):
    with pytest.raises(CartkinError, match=message):
        build()
