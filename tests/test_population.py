"""Virtual populations: counter-based draws, variability, covariates, reproducibility, errors."""
import math

import numba
import numpy as np
import pytest
from scipy import special, stats

import cartkin
from cartkin import CartkinError
from cartkin.population import (Empirical, EmpiricalTable, Fixed, LogNormal, Normal, Population, Uniform,
                                Variability)
from cartkin.population.population import COVARIATE_OFFSET, draw_key
from cartkin.population.random import (normal_quantiles, standard_normals, standard_normals_at, uniforms,
                                       uniforms_at)

IL10 = cartkin.load_model("il10")


def col(P, name):
    return P[:, IL10.parameter_index(name)]


def with_threads(n, build):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(n)
        return build()
    finally:
        numba.set_num_threads(before)


def make(n=2000, seed=7, **kw):
    return Population("il10", n, seed=seed,
                      variability=Variability(cv={"rho": 40, "kappa": 30}, correlation={("rho", "kappa"): 0.5}),
                      covariates={"L0": LogNormal(1000, 150), "WT": Normal(55, 20, 12, 120)}, **kw)


# --- the random stream -----------------------------------------------------------------------------

def test_uniforms_and_normals_are_statistically_sane():
    u = uniforms(11, 0, 100_000, 2)
    assert np.all((u > 0) & (u < 1))
    assert u.mean() == pytest.approx(0.5, abs=0.003) and u.var() == pytest.approx(1 / 12, rel=0.01)
    assert stats.kstest(u[:, 0], "uniform").pvalue > 1e-3
    z = standard_normals(11, 0, 100_000, 2)
    assert z.mean() == pytest.approx(0, abs=0.01) and z.var() == pytest.approx(1, rel=0.01)
    assert stats.kstest(z[:, 1], "norm").pvalue > 1e-3
    # neighbouring subjects and draws are uncorrelated
    assert abs(np.corrcoef(z[:-1, 0], z[1:, 0])[0, 1]) < 0.015
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.015
    # the normal at counter k is the inverse normal CDF of the uniform at counter k
    np.testing.assert_allclose(z, special.ndtri(u), rtol=1e-13, atol=1e-13)


def test_inverse_normal_cdf_matches_scipy_into_the_tails():
    p = np.concatenate([np.geomspace(1e-300, 1e-3, 500), np.linspace(1e-3, 1 - 1e-3, 2001), 1 - np.geomspace(1e-15, 1e-3, 200)])
    np.testing.assert_allclose(normal_quantiles(p), special.ndtri(p), rtol=1e-14, atol=1e-14)
    assert list(normal_quantiles([0.0, 1.0])) == [-math.inf, math.inf]


def test_a_subjects_draws_do_not_depend_on_the_block_or_threads():
    whole = standard_normals(5, 0, 1000, 4)
    for i in (0, 1, 537, 999):
        np.testing.assert_array_equal(standard_normals(5, i, 1, 4)[0], whole[i])
    np.testing.assert_array_equal(standard_normals(5, 0, 1000, 2, offset=2), whole[:, 2:])
    np.testing.assert_array_equal(standard_normals_at(5, [999, 3], [3, 0]), whole[[999, 3]][:, [3, 0]])
    np.testing.assert_array_equal(with_threads(1, lambda: standard_normals(5, 0, 1000, 4)), whole)
    np.testing.assert_array_equal(with_threads(2, lambda: uniforms(5, 0, 1000, 4)),
                                  with_threads(1, lambda: uniforms(5, 0, 1000, 4)))
    assert not np.array_equal(uniforms(6, 0, 1000, 4), uniforms(5, 0, 1000, 4))
    assert uniforms_at(2 ** 64 - 1, [2 ** 62], [2 ** 62]).shape == (1, 1)


@pytest.mark.parametrize("call, message", [
    (lambda: uniforms(-1, 0, 3, 3), "seed must be an integer"),
    (lambda: uniforms(1.5, 0, 3, 3), "seed must be an integer"),
    (lambda: uniforms(1, -2, 3, 3), "first_subject must be an integer >= 0"),
    (lambda: standard_normals(1, 0, 3, -1), "n_draws must be an integer >= 0"),
    (lambda: uniforms_at(1, [0.5], [0]), "subjects must be a one-dimensional array of integers"),
])
def test_bad_stream_arguments(call, message):
    with pytest.raises(CartkinError, match=message):
        call()


# --- populations: reproducibility --------------------------------------------------------------------

def test_same_seed_same_patients_and_other_seed_differs():
    P = make().parameters()
    np.testing.assert_array_equal(P, make().parameters())
    assert not np.array_equal(P, make(seed=8).parameters())
    assert P.shape == (2000, IL10.n_parameters())


def test_a_subject_does_not_depend_on_population_size_chunking_or_threads(monkeypatch):
    big = make(n=1000).parameters()
    np.testing.assert_array_equal(make(n=10).parameters(), big[:10])
    np.testing.assert_array_equal(make(n=1000).parameters(500, 10), big[500:510])
    np.testing.assert_array_equal(make(n=1000).subset([999, 0, 42]), big[[999, 0, 42]])
    np.testing.assert_array_equal(with_threads(1, lambda: make(n=1000).parameters()), big)
    np.testing.assert_array_equal(with_threads(2, lambda: make(n=1000).parameters()), big)
    monkeypatch.setattr("cartkin.population.population.CHUNK", 7)
    np.testing.assert_array_equal(make(n=1000).parameters(), big)


def test_draws_of_one_parameter_ignore_the_others():
    base = Population("il10", 300, seed=1, variability=Variability(cv={"rho": 40})).parameters()
    more = Population("il10", 300, seed=1, variability=Variability(cv={"k_act": 30, "rho": 40, "B0": 20}),
                      covariates={"L0": Uniform(100, 2000), "WT": Fixed(30)}).parameters()
    np.testing.assert_array_equal(col(base, "rho"), col(more, "rho"))
    # the order of dict keys never matters, for variability and for correlations
    a = Variability(cv={"rho": 40, "kappa": 30}, correlation={("rho", "kappa"): 0.4})
    b = Variability(cv={"kappa": 30, "rho": 40}, correlation={("kappa", "rho"): 0.4})
    np.testing.assert_array_equal(Population("il10", 50, variability=a).parameters(),
                                  Population("il10", 50, variability=b).parameters())
    # a covariate's uniform sits at its own counter, disjoint from the random effects
    u = uniforms_at(1, np.arange(300), [COVARIATE_OFFSET + draw_key("L0")])[:, 0]
    np.testing.assert_array_equal(col(more, "L0"), 100 + 1900 * u)


# --- populations: the requested distributions ----------------------------------------------------------

def test_variability_and_correlation_are_recovered():
    pop = make(n=20000)
    P = pop.parameters()
    log_rho, log_kappa = np.log(col(P, "rho")), np.log(col(P, "kappa"))
    # CV of a log-normal: sqrt(exp(ω²) - 1) equals the requested CV when ω² = ln(1 + CV²)
    for values, cv in ((col(P, "rho"), 0.40), (col(P, "kappa"), 0.30)):
        assert np.std(values) / np.mean(values) == pytest.approx(cv, rel=0.04)
    assert np.std(log_rho) == pytest.approx(math.sqrt(math.log(1 + 0.4 ** 2)), rel=0.02)
    assert np.exp(np.mean(log_rho)) == pytest.approx(IL10.parameters["rho"], rel=0.01)
    assert np.corrcoef(log_rho, log_kappa)[0, 1] == pytest.approx(0.5, abs=0.02)
    assert np.median(col(P, "L0")) == pytest.approx(1000, rel=0.05)
    assert np.all(col(P, "delta_X") == IL10.parameters["delta_X"])  # no variability: the default


def test_omega_typical_values_and_full_correlation_matrix():
    names = ("rho", "kappa", "k_exh")
    R = [[1, 0.3, -0.4], [0.3, 1, 0.2], [-0.4, 0.2, 1]]
    v = Variability(omega={"rho": 0.09, "kappa": 0.04, "k_exh": 0.16}, correlation=(names, R))
    assert v.correlation == {("rho", "kappa"): 0.3, ("rho", "k_exh"): -0.4, ("kappa", "k_exh"): 0.2}
    pop = Population("il10", 20000, seed=3, variability=v, typical={"rho": 2.0})
    order = v.ordered(IL10)  # Ω is laid out in the model's parameter order
    assert order == ("rho", "k_exh", "kappa")
    typical = np.array([2.0 if q == "rho" else IL10.parameters[q] for q in order])
    eta = np.log(pop.parameters()[:, [IL10.parameter_index(q) for q in order]] / typical)
    np.testing.assert_allclose(np.cov(eta.T), v.covariance(IL10), atol=0.006)
    assert v.covariance(IL10)[0, 1] == pytest.approx(-0.4 * 0.3 * 0.4)
    assert v.variance("rho") == 0.09 and Variability(cv={"rho": 40}).variance("rho") == pytest.approx(math.log(1.16))


def test_variability_sample_is_typical_times_exp_eta():
    v = Variability(cv={"rho": 40, "kappa": 30}, correlation={("rho", "kappa"): 0.5})
    z = np.zeros((3, IL10.n_parameters()))
    z[:, IL10.parameter_index("rho")] = [0.0, 1.0, -1.0]
    typical = np.array(list(IL10.parameters.values()))
    P = v.sample(IL10, typical, z)
    L = v.cholesky(IL10)
    np.testing.assert_allclose(col(P, "rho"), np.exp(L[0, 0] * np.array([0, 1, -1])))
    np.testing.assert_allclose(col(P, "kappa"), IL10.parameters["kappa"] * np.exp(L[1, 0] * np.array([0, 1, -1])))
    np.testing.assert_array_equal(np.delete(P, [IL10.parameter_index("rho"), IL10.parameter_index("kappa")], 1),
                                  np.delete(np.tile(typical, (3, 1)), [IL10.parameter_index("rho"),
                                                                        IL10.parameter_index("kappa")], 1))


def test_covariates_stay_inside_their_truncation():
    u = uniforms(9, 0, 20000, 1)[:, 0]
    x = Normal(55, 20, 12, 120).sample(u)
    assert x.min() >= 12 and x.max() <= 120 and x.min() < 13 and x.max() > 115
    tail = Normal(0, 1, lower=8).sample(u)  # far in a tail: inverse CDF keeps its precision
    assert tail.min() >= 8 and np.isfinite(tail).all() and np.mean(tail) == pytest.approx(8.12, abs=0.01)
    one_sided = Normal(70, 15, upper=80).sample(u)
    assert one_sided.max() <= 80
    y = Uniform(2, 3).sample(u)
    assert y.min() >= 2 and y.max() <= 3
    assert np.all(Fixed(4.5).sample(u) == 4.5)
    ln = LogNormal(1000, 150).sample(u)
    assert np.std(np.log(ln)) == pytest.approx(math.sqrt(math.log(1 + 1.5 ** 2)), rel=0.03)
    cut = LogNormal(1e-13, 1e6, upper=1e-9).sample(u)  # e.g. a CD19-negative fraction: wide, bounded above
    assert cut.max() <= 1e-9 and cut.max() > 0.9e-9 and cut.min() > 0
    assert np.mean(cut <= 1e-13) > 0.5  # the cut moves mass below the median, none beyond the bound
    both = LogNormal(1000, 150, lower=100, upper=5000).sample(u)
    assert both.min() >= 100 and both.max() <= 5000 and both.min() < 110 and both.max() > 4500
    assert LogNormal(1e-13, 1e6, upper=1e-3).support() == (0.0, 1e-3)
    pop = Population("il10", 5000, seed=2, covariates={"WT": Normal(55, 20, 12, 120), "L0": Uniform(10, 20)})
    P = pop.parameters()
    assert col(P, "WT").min() >= 12 and col(P, "WT").max() <= 120
    assert col(P, "L0").min() >= 10 and col(P, "L0").max() <= 20


def test_empirical_draws_only_existing_values(tmp_path):
    path = tmp_path / "cov.csv"
    path.write_text("id,weight\n1,20\n2,35.5\n3,80\n")
    pop = Population("il10", 600, seed=3, covariates={"WT": Empirical.from_csv(path, "weight")})
    wt = col(pop.parameters(), "WT")
    assert set(np.unique(wt)) == {20.0, 35.5, 80.0}
    counts = np.unique(wt, return_counts=True)[1]
    assert counts.min() > 150  # each row about equally likely
    assert set(Empirical([1, 2]).sample(np.array([1e-9, 0.4999, 0.5, 1 - 1e-16]))) == {1.0, 2.0}


def test_empirical_table_keeps_rows_together(tmp_path):
    path = tmp_path / "patients.csv"
    path.write_text("id,weight,blasts\n1,20,100\n2,35,2500\n3,80,40\n4,61,900\n")
    table = EmpiricalTable.from_csv(path, columns={"WT": "weight", "L0": "blasts"})
    assert table.n_rows == 4 and table.names == ("WT", "L0")
    rows = {(20.0, 100.0), (35.0, 2500.0), (80.0, 40.0), (61.0, 900.0)}
    for covariates in (table.distributions(), {"WT": table, "L0": table},
                       {"L0": table["L0"], "B0": Uniform(100, 300), "WT": table["WT"]}):
        P = Population("il10", 400, seed=4, covariates=covariates).parameters()
        pairs = set(zip(col(P, "WT"), col(P, "L0")))
        assert pairs == rows
    # joint draws are the table's own sample, from one uniform
    u = uniforms(1, 0, 50, 1)[:, 0]
    drawn = table.sample(u)
    assert set(zip(drawn["WT"], drawn["L0"])) <= rows
    # a table read twice (equal data) is still drawn jointly
    again = EmpiricalTable.from_csv(path, columns={"WT": "weight", "L0": "blasts"})
    P = Population("il10", 200, seed=4, covariates={"WT": table["WT"], "L0": again["L0"]}).parameters()
    assert set(zip(col(P, "WT"), col(P, "L0"))) <= rows


def test_population_simulates_every_patient():
    pop = Population("il10", 4, seed=1, variability=Variability(cv={"rho": 30}))
    result = pop.simulate(cartkin.Regimen.single(1e6), [0, 7, 14], progress=False)
    assert result.states.shape == (4, 3, IL10.n_states())
    np.testing.assert_array_equal(result.parameters, pop.parameters())
    d = pop.parameters_dict()
    assert list(d) == list(IL10.parameter_names) and d["rho"].shape == (4,)
    assert len(pop) == 4


# --- errors -------------------------------------------------------------------------------------------

def _bad_csv(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("build, message", [
    (lambda: Population("il10", 10, variability=Variability(cv={"rhoo": 10})), "unknown parameter 'rhoo'"),
    (lambda: Variability(cv={"rho": -1}), r"CV of rho must be >= 0 %"),
    (lambda: Variability(omega={"rho": -0.1}), "omega .* must be >= 0"),
    (lambda: Variability(cv={"rho": "x"}), "must be a finite number"),
    (lambda: Variability(cv={"rho": 10}, omega={"rho": 0.1}), "both as cv and omega"),
    (lambda: Variability(cv={"rho": 10, "kappa": 10}, correlation={("rho", "kappa"): 1.5}), "between -1 and 1"),
    (lambda: Variability(cv={"rho": 10}, correlation={("rho", "kappa"): 0.5}), "kappa has no variability"),
    (lambda: Variability(cv={"a": 10, "b": 10, "c": 10},
                         correlation={("a", "b"): 0.9, ("a", "c"): 0.9, ("b", "c"): -0.9}), "not positive definite"),
    (lambda: Variability(cv={"a": 1, "b": 1}, correlation=(("a", "b"), [[1, 0.2], [0.3, 1]])), "symmetric"),
    (lambda: Variability(cv={"a": 1, "b": 1}, correlation=(("a", "b"), [[1, 0.2]])), "must be 2 x 2"),
    (lambda: Population("il10", 0), "positive integer"),
    (lambda: Population("il10", 10, seed=-1), "seed must be an integer"),
    (lambda: Population("nomodel", 10), "unknown model"),
    (lambda: Population("il10", 10, covariates={"WT": Normal(55, 20)}), r"covariate WT: .*outside the parameter's bounds"),
    (lambda: Population("il10", 10, covariates={"WT": 70}), "covariate WT: expected a distribution"),
    (lambda: Population("il10", 10, covariates={"wt": Fixed(70)}), "unknown parameter 'wt'"),
    (lambda: Population("il10", 10, variability=Variability(cv={"rho": 10}), covariates={"rho": Fixed(1)}),
     "both variability and a covariate"),
    (lambda: Population("il10", 10, typical={"armored": 2}), "typical value armored = 2 is outside its bounds"),
    (lambda: Population("il10", 2000, seed=1, variability=Variability(cv={"f_blood": 2000}),
                        typical={"f_blood": 0.5}).parameters(), r"subject \d+ has f_blood = .* outside its bounds"),
    (lambda: Population("il10", 10).parameters(5, 10), "requested from a population of 10"),
    (lambda: Population("il10", 10).subset([3, 10]), "between 0 and 9"),
    (lambda: Normal(0, 1, 5, 2), "must be below upper"),
    (lambda: Normal(0, 1, lower=50), "no probability"),
    (lambda: LogNormal(0, 10), "median must be > 0"),
    (lambda: LogNormal(1, 10, lower=5, upper=2), r"lower \(5\) must be below upper \(2\)"),
    (lambda: LogNormal(1, 10, upper=-1), "upper must be > 0"),
    (lambda: Uniform(3, 2), "must not exceed high"),
    (lambda: Empirical([]), "has no values"),
    (lambda: Empirical([1, float("nan")]), "NaN or infinite"),
    (lambda: EmpiricalTable({"WT": [1, 2], "L0": [1]}), "differ in length"),
    (lambda: EmpiricalTable({"WT": [1, 2]})["L0"], "no column 'L0'"),
])
def test_bad_population_input(build, message):
    with pytest.raises(CartkinError, match=message):
        build()


@pytest.mark.parametrize("text, column, message", [
    (None, "weight", "covariate file not found"),
    ("id,weight\n1,20\n", "kg", r"no column 'kg' \(columns: id, weight\)"),
    ("weight\n20\nheavy\n", "weight", r"line 3: weight = 'heavy' is not a number"),
    ("weight,x\n20,1\n,2\n", "weight", r"line 3: weight = '' is not a number"),
    ("weight\n20\ninf\n", "weight", "not a finite number"),
    ("weight\n", "weight", "no data rows"),
    ("", "weight", "empty file"),
])
def test_bad_covariate_files(tmp_path, text, column, message):
    path = tmp_path / "missing.csv" if text is None else _bad_csv(tmp_path, text)
    with pytest.raises(CartkinError, match=message):
        Empirical.from_csv(path, column)
    with pytest.raises(CartkinError, match=message):
        EmpiricalTable.from_csv(path, columns={"WT": column})
