"""Population fits (SAEM): recovery of known population parameters, likelihood by importance sampling
against quadrature, reproducibility, VPC and CLI errors; the real Liu 2022 data when present."""
import json
import math
from pathlib import Path

import numba
import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.data import Dataset, Subject
from cartkin.estimation import fit_population, load_fit, vpc
from cartkin.stats.covariates import CovariateEffect
from cartkin.stats.error_models import error_model
from cartkin.estimation.population.model import PopulationModel, truncated_normal_below
from cartkin.estimation.population.results import PopulationEstimates
from cartkin.estimation.population.saem import SaemOptions, _importance_sampling
from cartkin.solve import Solver

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022"
TRUTH = {"rTA0": 1.62, "lTA0": 0.12, "eBp": 22.72}
OMEGA = {"rTA0": 0.3, "lTA0": 0.2, "eBp": 0.4}     # variances of the log-normal random effects
BETA = -0.4                                        # rTA0 ∝ (nB0 / 1000)^BETA
SIGMA = 0.3
TIMES = np.array([1.0, 3, 7, 10, 14, 21, 28, 42, 56, 84])


def simulated_population(n, seed, beta=BETA):
    """liu2022 subjects: log-normal random effects, a power covariate effect of nB0 on rTA0,
    proportional noise on nTA and nB, censoring at 0.2."""
    model = cartkin.load_model("liu2022")
    rng = np.random.default_rng(seed)
    nb0 = np.exp(rng.normal(math.log(1000), 1.0, n))
    params = {"nB0": nb0}
    for name, value in TRUTH.items():
        params[name] = value * np.exp(rng.normal(0, math.sqrt(OMEGA[name]), n))
    params["rTA0"] = params["rTA0"] * (nb0 / 1000) ** beta
    return model, observed(model, params, lambda f: f * np.exp(rng.normal(0, SIGMA, f.size)))


def observed(model, params, noise) -> Dataset:
    """Subjects observed at TIMES (nTA and nB) with noise(f) -> y, censored at 0.2; nB0 as covariate."""
    batch = cartkin.simulate_batch(model, None, TIMES, params, rtol=1e-10, atol=1e-12, progress=False)
    assert batch.ok.all()
    subjects = []
    for i in range(batch.ok.size):
        t = np.concatenate([TIMES, TIMES])
        k = np.repeat([0, 1], TIMES.size)
        y = noise(np.concatenate([batch.observable("nTA")[i], batch.observable("nB")[i]]))
        order = np.argsort(t, kind="stable")
        t, k, y = t[order], k[order], y[order]
        cens = y <= 0.2
        subjects.append(Subject(str(i + 1), t, np.where(cens, 0.2, y), k, cens, np.where(cens, 0.2, np.nan),
                                {"nB0": float(params["nB0"][i])}))
    return Dataset(tuple(subjects), model.observables)


@pytest.fixture(scope="module")
def recovery():
    model, data = simulated_population(40, seed=11)
    result = fit_population(model, data, estimate=list(TRUTH), covariate_effects=["rTA0=nB0:power"], seed=3,
                            options=SaemOptions(iterations=(150, 80), conditional_iterations=100,
                                                importance_samples=500))
    return data, result


def test_saem_recovers_population_parameters(recovery):
    data, result = recovery
    assert data.n_censored > 0  # the M3 term is exercised
    assert result.converged, result.warnings
    se = dict(zip(result.parameter_names, result.standard_errors))
    for name, true in TRUTH.items():
        estimate = result.typical[name]
        assert estimate == pytest.approx(true, rel=0.2), (name, estimate)
        assert abs(estimate - true) < 3 * se[name]      # the SE is of the right size
    omega = np.diag(result.omega)
    for j, name in enumerate(result.pm.parameters):
        assert omega[j] == pytest.approx(OMEGA[name], rel=0.5), (name, omega[j])
    beta = result.coefficients["beta_rTA0_nB0"]
    assert abs(beta - BETA) < max(0.2 * abs(BETA), 3 * se["beta_rTA0_nB0"]), beta
    assert result.pm.effects[0].reference == pytest.approx(np.median([s.covariates["nB0"] for s in data.subjects]))
    for name in ("sigma_nTA", "sigma_nB"):
        assert result.sigma[name] == pytest.approx(SIGMA, rel=0.2)
    assert np.all(np.isfinite(result.standard_errors))
    assert np.isfinite(result.ofv) and result.ofv_se < 2.0
    assert result.aic == pytest.approx(result.ofv + 2 * result.n_estimated)
    # conditional modes sit where the individual posterior is highest: close to the conditional means
    assert np.all(np.abs(result.modes - result.conditional_mean) < 3 * np.sqrt(
        np.einsum("ijj->ij", result.conditional_cov)) + 0.05)
    shrink = result.shrinkage
    assert np.all((shrink > -0.5) & (shrink < 0.9))


def test_fit_folder_tables_and_plots(recovery, tmp_path):
    data, result = recovery
    files = cartkin.write(result, tmp_path) + cartkin.plot(result, tmp_path)
    names = {Path(f).name for f in files}
    assert {"population.csv", "individuals.csv", "predictions.csv", "convergence.csv", "fit.json", "data.csv",
            "convergence.png", "goodness_of_fit.png", "individual_fits.png", "random_effects.png"} <= names
    assert all(Path(f).stat().st_size > 0 for f in files)
    info = json.loads((tmp_path / "fit.json").read_text())
    assert info["converged"] is True and info["estimates"]["typical"]["rTA0"] == pytest.approx(result.typical["rTA0"])
    population = (tmp_path / "population.csv").read_text().splitlines()
    assert population[0].startswith("parameter,kind,estimate,se,rse_pct")
    assert len(population) == 1 + result.n_estimated
    predictions = (tmp_path / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + data.n_observations and "PRED,IPRED,IWRES" in predictions[0]
    # the folder reloads with its data, to the same estimates
    loaded = load_fit(tmp_path)
    assert loaded.pm.data.n_observations == data.n_observations
    np.testing.assert_allclose(loaded.estimates.omega, result.omega)
    np.testing.assert_allclose(loaded.estimates.fixed_effects, result.estimates.fixed_effects)


def test_vpc_command_writes_its_plot(recovery, tmp_path, capsys):
    _, result = recovery
    cartkin.write(result, tmp_path)
    assert main(["vpc", str(tmp_path), "--replicates", "60", "--seed", "2"]) == 0
    assert (tmp_path / "vpc.png").stat().st_size > 10_000
    rows = (tmp_path / "vpc.csv").read_text().splitlines()
    assert rows[0].startswith("DVID,bin,") and len(rows) > 4
    assert main(["vpc", str(tmp_path), "--replicates", "60", "--pred-corrected", "-o", str(tmp_path / "pc.png")]) == 0
    assert (tmp_path / "pc.png").is_file() and (tmp_path / "pcvpc.csv").is_file()
    # the model the data came from: observed medians inside the simulated 90% intervals in most bins
    check = vpc(result, replicates=100, seed=1)
    inside = []
    for c in check.checks:
        for b in range(c.centre.size):
            if c.count[b] >= 8 and not (np.isfinite(c.limit[b]) and c.observed[b, 1] <= c.limit[b]):
                inside.append(c.simulated[b, 1, 0] <= c.observed[b, 1] <= c.simulated[b, 1, 2])
    assert len(inside) >= 6 and np.mean(inside) >= 0.7, inside


SCENARIO = """
[scenario]
name = "from a fit"
model = "{model}"
horizon_days = 60

[population]
n = 400
seed = 2
from_fit = "{fit}"

[population.covariates]
nB0 = {{ distribution = "lognormal", median = 1000, cv = 100 }}

[outcomes]
exposure = "nTA"
limit = 0.2
blast = "LB"

[[arms]]
name = "as fitted"
regimen = {{ none = true }}
"""


def test_scenario_takes_its_population_from_a_fit(recovery, tmp_path, capsys):
    from cartkin.scenario.compare import arm_parameters, population_for
    _, result = recovery
    cartkin.write(result, tmp_path / "fit")
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO.format(model="liu2022", fit="fit"))  # relative to the scenario file
    scenario = cartkin.Scenario.from_toml(path)
    spec = scenario.population
    assert spec.typical["rTA0"] == pytest.approx(result.typical["rTA0"])
    omega = dict(zip(result.pm.parameters, np.diag(result.omega)))
    assert spec.variability_cv["eBp"] == pytest.approx(100 * math.sqrt(math.expm1(omega["eBp"])))
    # virtual patients follow the fitted model: log rTA0 = μ + β log(nB0 / ref) + η
    P = arm_parameters(scenario, population_for(scenario).parameters(), scenario.arms[0])
    model = scenario.model
    reference = result.pm.effects[0].reference
    x = np.log(P[:, model.parameter_index("nB0")] / reference)
    y = np.log(P[:, model.parameter_index("rTA0")])
    slope, intercept = np.polyfit(x, y, 1)
    assert slope == pytest.approx(result.coefficients["beta_rTA0_nB0"], abs=0.1)
    assert intercept == pytest.approx(math.log(result.typical["rTA0"]), abs=0.1)
    assert np.var(y - slope * x - intercept) == pytest.approx(omega["rTA0"], rel=0.25)
    assert main(["compare", str(path), "-o", str(tmp_path / "out"), "-n", "60", "--no-plots"]) == 0
    assert "population fit" in (tmp_path / "out" / "summary.md").read_text()
    capsys.readouterr()
    path.write_text(SCENARIO.format(model="liu2022", fit="missing"))
    assert main(["compare", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "population.from_fit: fit folder not found" in err and err.count("\n") == 1
    path.write_text(SCENARIO.format(model="stein2019", fit="fit").replace('exposure = "nTA"', 'exposure = "C"')
                    .replace('blast = "LB"', 'blast = ""').replace("nB0 =", "Cmax ="))
    assert main(["compare", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "is of model liu2022, the scenario's model is stein2019" in capsys.readouterr().err


def test_same_seed_same_estimates_whatever_the_thread_count(monkeypatch):
    # a SAEM proposal here is 60 rows, under the serial cut-off: lower it so the iterations really run threaded
    monkeypatch.setattr("cartkin.simulation.run.MIN_CHUNK", 4)
    model, data = simulated_population(12, seed=4)
    options = SaemOptions(iterations=(25, 15), conditional_iterations=20, importance_samples=100)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fit_population(model, data, estimate=["rTA0", "lTA0"], seed=7, options=options)
        numba.set_num_threads(max(2, previous) if numba.config.NUMBA_NUM_THREADS > 1 else 1)
        two = fit_population(model, data, estimate=["rTA0", "lTA0"], seed=7, options=options)
    finally:
        numba.set_num_threads(previous)
    other = fit_population(model, data, estimate=["rTA0", "lTA0"], seed=8, options=options)
    np.testing.assert_array_equal(one.estimates.fixed_effects, two.estimates.fixed_effects)
    np.testing.assert_array_equal(one.omega, two.omega)
    np.testing.assert_array_equal(one.traces, two.traces)
    assert one.ofv == two.ofv
    assert not np.array_equal(one.traces, other.traces)


def test_importance_sampling_matches_quadrature():
    """One random effect: the marginal likelihood per subject by brute-force quadrature."""
    model, data = simulated_population(6, seed=21, beta=0.0)
    pm = PopulationModel(model, data, ["rTA0"], {}, "proportional", [], None, Solver("auto", 1e-8, 1e-10))
    est = PopulationEstimates(np.array([math.log(1.62)]), np.array([[0.3]]), np.array([0.3, 0.3]))
    grid = np.linspace(math.log(1.62) - 6, math.log(1.62) + 6, 1201)
    n = data.n_subjects
    design = pm.design(np.repeat(np.arange(n), grid.size))
    pred, ok = design.predict(np.tile(grid, n)[:, None])
    log_joint = (-design.nll(pred, ok, est.sigma).reshape(n, grid.size)
                 - 0.5 * (grid - math.log(1.62)) ** 2 / 0.3 - 0.5 * math.log(2 * math.pi * 0.3))
    step = grid[1] - grid[0]
    exact = np.log(np.sum(np.exp(log_joint - log_joint.max(1, keepdims=True)), axis=1) * step) + log_joint.max(1)
    weights = np.exp(log_joint - log_joint.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    mean = (weights @ grid)[:, None]
    var = (weights @ grid ** 2)[:, None] - mean ** 2
    ofv, ofv_se, subject_ll = _importance_sampling(pm, est, mean, var[:, :, None], np.full((n, 1), math.log(1.62)),
                                                   2000, np.random.default_rng(0))
    np.testing.assert_allclose(subject_ll, exact, atol=0.02)
    assert ofv == pytest.approx(-2 * exact.sum(), abs=max(4 * ofv_se, 0.05))


@pytest.mark.parametrize("error", ["proportional", "additive", "combined1", "combined2"])
def test_design_likelihood_is_the_error_models_per_subject(error):
    """Design.nll gives each row the error model's −log L of that subject's observations, with the σ's of
    each observable taken from the residual parameter vector."""
    model, data = simulated_population(4, seed=5)
    pm = PopulationModel(model, data, ["rTA0"], {}, error, [], None, Solver("auto", 1e-8, 1e-10))
    em = error_model(error)
    sigma = np.array([0.3, 0.4, 2.0, 0.25][:em.n_sigmas * 2])  # nTA's σ's then nB's
    rows = np.array([2, 0, 2])
    design = pm.design(rows)
    pred, ok = design.predict(np.log([[1.0], [1.6], [2.5]]))
    assert ok.all()
    values = design.nll(pred, ok, sigma)
    for r, i in enumerate(rows):
        s = data.subjects[i]
        f = pred[design.starts[r]:design.starts[r + 1]]
        slot = np.array([pm.observables.index(model.observables[k]) for k in s.observable_index])
        sigmas = sigma.reshape(2, em.n_sigmas)[slot].T
        assert values[r] == pytest.approx(em.negative_log_likelihood(f, s.values, s.censored, s.limits, sigmas).value,
                                          rel=1e-12)
    assert pm.sigma_names == em.sigma_names(["nTA", "nB"])


def test_truncated_normal_draws_stay_below_their_limit():
    rng = np.random.default_rng(0)
    upper = np.array([-40.0, -3.0, 0.0, 2.0] * 5000)
    z = truncated_normal_below(rng, upper, np.ones(upper.size))
    assert np.all(z <= upper)
    # E[Z | Z < 0] = −√(2/π)
    assert z[upper == 0].mean() == pytest.approx(-math.sqrt(2 / math.pi), abs=0.03)


def test_bad_population_input_is_one_line_exit_2(tmp_path, capsys):
    model, data = simulated_population(3, seed=1)
    path = data.to_csv(tmp_path / "d.csv")
    base = ["fit", str(path), "--model", "liu2022", "--covariate", "nB0=nB0", "-o", str(tmp_path / "out"),
            "--population"]
    cases = [(["--covariate-effect", "bogus=nB0"], "unknown parameter 'bogus'"),
             (["--covariate-effect", "rTA0=WT"], "WT is not a covariate in the data"),
             (["--covariate-effect", "ka=nB0", "--estimate", "rTA0"], "ka is not estimated"),
             (["--covariate-effect", "rTA0=nB0:linear"], "unknown kind 'linear'"),
             (["--iterations", "300"], "expected two integers K1,K2"),
             (["--estimate", "rTA0,nB0"], "nB0 is a covariate in the data"),
             (["--sigma", "sigma_nTA=0.3"], "--sigma is for individual fits")]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(base[:-1] + ["--omega", "full"]) == 2
    assert "--omega needs --population" in capsys.readouterr().err
    assert main(["vpc", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "fit folder not found" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["vpc", str(tmp_path / "empty")]) == 2
    assert "not a population fit folder" in capsys.readouterr().err
    with pytest.raises(CartkinError, match="power needs"):
        PopulationModel(model, Dataset.from_arrays("liu2022", ["1"], [1.0], [5.0], "nTA", covariates={"nB0": [0.0]}),
                        ["rTA0"], {}, "proportional", [CovariateEffect("rTA0", "nB0")], None, Solver())


@pytest.mark.skipif(not LIU.is_dir(), reason=f"real Liu 2022 data not found at {LIU} (../shared/data/liu2022)")
def test_real_liu2022_population_fit_and_vpc(tmp_path, capsys):
    out = tmp_path / "fit"
    args = ["fit", str(LIU / "Data_CR.csv"), str(LIU / "Data_NR.csv"), "--model", "liu2022", "-o", str(out),
            "--map", "time=TIME,y=DV,y_ID=DVID", "--dvid", "1=nTA,2=nB", "--covariate", "Reg=nB0",
            "--censor-floor", "0.2", "--prefix-ids", "--population", "--estimate", "rTA0,lTA0,eBp,nTN0",
            "--iterations", "150,80", "--seed", "2", "--vpc", "--replicates", "50", "--no-plots"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "population estimates (SAEM, 21 subjects" in printed
    info = json.loads((out / "fit.json").read_text())
    assert info["likelihood"]["n_subjects"] == 21 and math.isfinite(info["likelihood"]["minus2loglik"])
    assert all(v > 0 for v in info["estimates"]["typical"].values())
    assert info["data"]["files"][0].endswith("Data_CR.csv") and info["data"]["options"]["censor_floor"] == 0.2
    assert not (out / "data.csv").exists()  # the data stay where they are
    assert (out / "vpc.png").stat().st_size > 10_000
    assert main(["vpc", str(out), "--replicates", "40", "--pred-corrected"]) == 0
    assert (out / "pcvpc.png").is_file()


def test_saem_full_omega_exponential_effect_and_combined_error():
    """The options the recovery test above does not use: a full Ω (correlated random effects), an
    exponential covariate effect and combined (additive + proportional) residual error."""
    model = cartkin.load_model("liu2022")
    rng = np.random.default_rng(1)
    n, corr, beta = 40, 0.7, -2e-4
    nb0 = np.exp(rng.normal(math.log(1000), 0.7, n))
    cov = corr * math.sqrt(OMEGA["rTA0"] * OMEGA["lTA0"])
    eta = rng.multivariate_normal([0, 0], [[OMEGA["rTA0"], cov], [cov, OMEGA["lTA0"]]], n)
    params = {"nB0": nb0, "rTA0": TRUTH["rTA0"] * np.exp(eta[:, 0] + beta * (nb0 - np.median(nb0))),
              "lTA0": TRUTH["lTA0"] * np.exp(eta[:, 1]), "eBp": np.full(n, TRUTH["eBp"])}
    data = observed(model, params, lambda f: f + rng.normal(0, 1, f.size) * np.sqrt(0.3 ** 2 + (0.2 * f) ** 2))
    result = fit_population(model, data, estimate=["rTA0", "lTA0"], fix={"eBp": TRUTH["eBp"]}, omega="full",
                            error="combined", covariate_effects=["rTA0=nB0:exp"], seed=3,
                            options=SaemOptions(iterations=(150, 80), conditional_iterations=100,
                                                importance_samples=300))
    for name in ("rTA0", "lTA0"):
        assert result.typical[name] == pytest.approx(TRUTH[name], rel=0.2)
    omega = result.omega
    assert omega[0, 0] == pytest.approx(OMEGA["rTA0"], rel=0.5) and omega[1, 1] == pytest.approx(OMEGA["lTA0"], rel=0.5)
    assert omega[0, 1] / math.sqrt(omega[0, 0] * omega[1, 1]) == pytest.approx(corr, abs=0.25)
    assert result.coefficients["beta_rTA0_nB0"] == pytest.approx(beta, rel=0.5)
    for name in ("nTA", "nB"):
        assert result.sigma[f"sigma_prop_{name}"] == pytest.approx(0.2, rel=0.3)
        assert 0.15 < result.sigma[f"sigma_add_{name}"] < 0.6
    assert np.isfinite(result.ofv)


def test_saem_recovers_combined1_error():
    """Data simulated with combined1 noise (sd = a + b f) by the error model's own `sample`: SAEM recovers
    the typical values and b well, a (a small share of the noise at these concentrations) roughly."""
    model = cartkin.load_model("liu2022")
    em = error_model("combined1")
    rng = np.random.default_rng(4)
    n, a, b = 30, 0.3, 0.2
    params = {"nB0": np.exp(rng.normal(math.log(1000), 0.7, n)), "eBp": np.full(n, TRUTH["eBp"])}
    for name in ("rTA0", "lTA0"):
        params[name] = TRUTH[name] * np.exp(rng.normal(0, math.sqrt(OMEGA[name]), n))
    data = observed(model, params, lambda f: em.sample(f, [a, b], rng))
    result = fit_population(model, data, estimate=["rTA0", "lTA0"], fix={"eBp": TRUTH["eBp"]}, error="combined1",
                            seed=1, options=SaemOptions(iterations=(100, 60), conditional_iterations=50,
                                                        importance_samples=100))
    assert result.pm.error == "combined1" and result.pm.error_model == em
    for name in ("rTA0", "lTA0"):
        assert result.typical[name] == pytest.approx(TRUTH[name], rel=0.2)
    for name in ("nTA", "nB"):
        assert result.sigma[f"sigma_prop_{name}"] == pytest.approx(b, rel=0.25)
        assert 0.1 < result.sigma[f"sigma_add_{name}"] < 0.6
    assert np.isfinite(result.ofv)


def test_cli_error_models_and_the_combined_alias(tmp_path, capsys):
    """--error combined1 fits and is recorded; "combined" (older fit.json files) reads as combined2; an
    unknown name is one line on stderr and exit code 2."""
    model, data = simulated_population(6, seed=2)
    path = data.to_csv(tmp_path / "d.csv")
    base = ["fit", str(path), "--model", "liu2022", "--covariate", "nB0=nB0", "--population", "--estimate", "rTA0",
            "--iterations", "20,10", "--no-plots"]
    assert main(base + ["-o", str(tmp_path / "c1"), "--error", "combined1"]) == 0
    assert "combined1 error" in capsys.readouterr().out
    info = json.loads((tmp_path / "c1" / "fit.json").read_text())
    assert info["error"] == "combined1"
    assert list(info["estimates"]["sigma"]) == ["sigma_add_nTA", "sigma_prop_nTA", "sigma_add_nB", "sigma_prop_nB"]
    info["error"] = "combined"
    (tmp_path / "c1" / "fit.json").write_text(json.dumps(info))
    loaded = load_fit(tmp_path / "c1")
    assert loaded.pm.error == "combined2" and loaded.pm.sigma_names == tuple(info["estimates"]["sigma"])
    assert main(base + ["-o", str(tmp_path / "bad"), "--error", "combined3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'combined3'" in err and "combined1" in err
    assert not (tmp_path / "bad").exists()
