"""Built-in scenarios by name, per-patient doses and trial replicates ([trial])."""
import csv
import dataclasses
import tomllib

import numba
import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.population import LogNormal
from cartkin.scenario import Scenario, compare, run_trials
from cartkin.scenario.spec import list_scenarios

# a small il10 scenario (short horizon): two arms, 6 trials of 4 patients
SMALL = """
[scenario]
name = "small trials"
model = "il10"
horizon_days = 60

[population]
n = 8
seed = 7

[population.variability]
rho = 20
kappa = 60

[population.covariates]
L0 = { distribution = "lognormal", median = 2000, cv = 150 }

[[arms]]
name = "conventional"
parameters = { armored = 0 }
regimen = { dose_per_kg = 1e6 }

[[arms]]
name = "IL-10"
parameters = { armored = 1 }
regimen = { dose_per_kg = 1e5 }

[trial]
size = 4
replicates = 6

[trial.observed]
response = { at_least = 4 }
crs_grade3plus = { at_most = 0 }
"""


def small(tmp_path, text=SMALL, name="s.toml") -> Scenario:
    path = tmp_path / name
    path.write_text(text)
    return Scenario.from_toml(path)


# ---- built-in scenarios ---------------------------------------------------------------------------------

def test_built_in_scenarios_resolve_by_name_and_print(capsys):
    assert {"eliana", "meta10-19"} <= set(list_scenarios()) == set(cartkin.list_scenarios())
    assert main(["scenario", "--list"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in listed] == list(list_scenarios())
    assert all(len(line.split(None, 1)) == 2 for line in listed)  # a description on every line
    for name in list_scenarios():
        assert main(["scenario", name]) == 0
        printed = capsys.readouterr().out
        scenario = Scenario.from_dict(tomllib.loads(printed))
        builtin = Scenario.builtin(name)
        assert scenario.name == builtin.name == cartkin.load_scenario(name).name
        assert scenario.provenance and scenario.provenance == builtin.provenance
    assert main(["scenario"]) == 0  # no name: the default, meta10-19
    assert tomllib.loads(capsys.readouterr().out)["scenario"]["name"] == cartkin.default_scenario().name
    assert cartkin.default_scenario().name == Scenario.builtin("meta10-19").name


def test_the_eliana_scenario_draws_eliana_like_patients():
    scenario = Scenario.builtin("eliana")
    assert [a.parameters["armored"] for a in scenario.arms] == [0]
    model = scenario.model
    P = cartkin.Population(model, 2000, seed=scenario.population.seed,
                           covariates=dict(scenario.population.covariates)).parameters()
    L0 = P[:, model.parameter_index("L0")]
    blasts = 97.19 * L0 / (L0 + 1909)  # il10's blast_pct at baseline
    assert 70 < np.median(blasts) < 78  # ELIANA: median 74% (5-99%)
    assert blasts.min() >= 4.9 and np.percentile(blasts, 1) < 15 and np.percentile(blasts, 99) > 95
    arm = scenario.arms[0]
    doses = arm.nominal_dose * arm.dose_scale(scenario.population.seed, np.arange(2000))
    assert 0.2e6 <= doses.min() and doses.max() <= 5.4e6  # ELIANA: 3.1 (0.2-5.4) x 10^6/kg
    assert np.median(doses) == pytest.approx(3.1e6, rel=0.05)


@pytest.mark.parametrize("argv", [["compare", "nosuch", "-o", "OUT"], ["scenario", "nosuch"],
                                  ["compare", "missing.toml", "-o", "OUT"]])
def test_an_unknown_scenario_name_is_one_line_naming_the_built_ins(argv, capsys, tmp_path):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cartkin: error: ") and len(err.strip().splitlines()) == 1
    assert all(name in err for name in list_scenarios())
    assert not (tmp_path / "out").exists()


def test_compare_takes_a_built_in_name_or_a_file_of_that_name(tmp_path, monkeypatch, capsys):
    """A path that exists is a file, whatever its name; otherwise the name is a built-in scenario."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eliana").write_text(SMALL.split("[trial]")[0])
    assert main(["compare", "eliana", "-o", "out", "-n", "3", "--no-plots"]) == 0
    assert "small trials" in capsys.readouterr().out
    assert cartkin.load_scenario("eliana").name == "small trials"
    monkeypatch.chdir(tmp_path / "out")
    assert cartkin.load_scenario("eliana").name == Scenario.builtin("eliana").name


# ---- per-patient doses -------------------------------------------------------------------------------

def test_a_dose_distribution_gives_each_patient_its_own_dose(tmp_path):
    text = SMALL.replace("regimen = { dose_per_kg = 1e6 }", 'regimen = { dose_per_kg = { distribution = "lognormal", '
                         'median = 1e6, cv = 80, lower = 2e5, upper = 3e6 } }').split("[trial]")[0]
    scenario = small(tmp_path, text)
    result = compare(scenario, progress=False)
    conventional = result.arms[0]
    doses = conventional.outcomes["dose_per_kg"]
    assert np.all((doses >= 2e5) & (doses <= 3e6)) and np.unique(doses).size == doses.size
    assert "dose_per_kg" not in result.arms[1].outcomes  # a fixed dose is not repeated per patient
    # patient i with the arm's dose distribution = patient i given its own dose as a fixed regimen
    P = cartkin.scenario.arms.arm_parameters(scenario, result.parameters, scenario.arms[0])
    for i in (0, 3, 7):
        alone = cartkin.simulate(scenario.model, cartkin.Regimen.single(doses[i]), scenario.times(),
                                 dict(zip(scenario.model.parameter_names, P[i])))
        exposure = scenario.outcomes.get("exposure").observable  # car_copies in the built-in
        assert conventional.outcomes["cmax"][i] == pytest.approx(float(alone.observable(exposure).max()),
                                                                 rel=1e-9)
    cartkin.write(result, tmp_path / "out")
    rows = list(csv.DictReader(open(tmp_path / "out" / "patients.csv")))
    assert [r["dose_per_kg"] != "" for r in rows] == [True] * 8 + [False] * 8
    assert "median; per patient lognormal" in result.summary.rows[0]["regimen"]


def test_a_bounded_lognormal_stays_in_its_bounds_and_an_unbounded_one_is_unchanged():
    u = (np.arange(1000) + 0.5) / 1000
    bounded = LogNormal(100, 200, lower=20, upper=150).sample(u)
    assert bounded.min() >= 20 and bounded.max() <= 150 and np.all(np.diff(bounded) > 0)
    plain = LogNormal(100, 200).sample(u)
    assert plain.min() < 20 and plain.max() > 150
    with pytest.raises(CartkinError, match="lower .* must be below upper"):
        LogNormal(100, 50, lower=200, upper=150)


# ---- trial replicates --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    return run_trials(small(tmp_path_factory.mktemp("t")), progress=False)


def test_trial_replicates_do_not_depend_on_chunks_or_threads(tmp_path, trials):
    scenario = small(tmp_path)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_trials(scenario, progress=False, chunk_size=5)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        other = run_trials(scenario, progress=False, chunk_size=7)
    finally:
        numba.set_num_threads(before)
    for arm, values in trials.values.items():
        for name, v in values.items():
            np.testing.assert_array_equal(one.values[arm][name], v)
            np.testing.assert_array_equal(other.values[arm][name], v)
    cmax = trials.values["conventional"]["cmax_median"]
    assert cmax.shape == (6,) and np.unique(cmax).size == 6  # replicates differ: fresh patients in each
    again = run_trials(dataclasses.replace(scenario, population=dataclasses.replace(scenario.population, seed=8)),
                       progress=False)
    assert any(not np.array_equal(again.values[a]["cmax_median"], v["cmax_median"]) for a, v in trials.values.items())


def test_a_trial_grows_by_adding_patients_to_each_replicate(tmp_path, trials):
    """Patient j of replicate r is the same subject whatever the trial size: 4 of 5 patients are shared."""
    bigger = run_trials(small(tmp_path, SMALL.replace("size = 4", "size = 5")), progress=False)
    grew = bigger.values["conventional"]["response"] - trials.values["conventional"]["response"]
    assert set(np.unique(grew)) <= {0, 1}


def test_probability_of_the_observed_result_is_the_fraction_in_trials_csv(tmp_path, trials):
    comparison = dataclasses.replace(compare(small(tmp_path), progress=False, trials=False), trials=trials)
    files = cartkin.write(comparison, tmp_path / "out") + cartkin.plot(comparison, tmp_path / "out")
    assert {"trials.csv", "trials_summary.csv", "trials.png"} <= {f.name for f in files}
    rows = list(csv.DictReader(open(tmp_path / "out" / "trials.csv")))
    summary = list(csv.DictReader(open(tmp_path / "out" / "trials_summary.csv")))
    assert len(rows) == 2 * 6
    for arm in ("conventional", "IL-10"):
        mine = [r for r in rows if r["arm"] == arm]
        responses = [int(r["response"]) for r in mine]
        severe = [int(r["crs_grade3plus"]) for r in mine]
        assert all(0 <= x <= 4 for x in responses)
        expected = {"response": np.mean([x >= 4 for x in responses]),
                    "crs_grade3plus": np.mean([x <= 0 for x in severe]),
                    "all observed": np.mean([x >= 4 and y <= 0 for x, y in zip(responses, severe)])}
        for statistic, p in expected.items():
            row = next(r for r in summary if r["arm"] == arm and r["statistic"] == statistic)
            assert float(row["p_observed"]) == pytest.approx(p, abs=1e-6)
            assert float(row["p_observed_se"]) == pytest.approx(np.sqrt(p * (1 - p) / 6), abs=1e-6)
        row = next(r for r in summary if r["arm"] == arm and r["statistic"] == "response")
        assert float(row["median"]) in responses  # counts keep whole numbers
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "## Trial replicates" in text and "P(response ≥ 4/4)" in text


def test_a_replicate_takes_the_population_parameters_of_its_calibration_draw(tmp_path, trials):
    """Replicate r uses draw r mod n_draws: with a draw whose CAR T cannot expand, every other trial has no
    response; the other draw repeats the scenario's own values, so those trials are unchanged."""
    (tmp_path / "draws.csv").write_text("rho,rho_cv\n1.0,20\n0.001,20\n")
    scenario = small(tmp_path, SMALL + '\n[population.uncertainty]\ndraws = "draws.csv"\n')
    drawn = run_trials(scenario, progress=False)
    np.testing.assert_array_equal(drawn.draws, [0, 1, 0, 1, 0, 1])
    for arm, values in drawn.values.items():
        assert np.all(values["response"][1::2] == 0)
        np.testing.assert_array_equal(values["response"][0::2], trials.values[arm]["response"][0::2])
        assert values["response"][0::2].sum() > 0
    rows = drawn.rows()
    assert [r["draw"] for r in rows[:6]] == [1, 2, 1, 2, 1, 2]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("size = 4", "size = 0"), "trial.size: must be a whole number of patients"),
    (lambda s: s.replace("replicates = 6", "replicates = 0"), "trial.replicates: must be a whole number"),
    (lambda s: s.replace("at_least = 4", "at_least = 5"), "trial.observed.response.at_least: must be a count"),
    (lambda s: s.replace("response = {", "responses = {"), "trial.observed.responses: unknown outcome"),
    (lambda s: s.replace("response = { at_least = 4 }", "response = 4"), "trial.observed.response: give the count"),
    (lambda s: s.replace("at_least = 4", "at_least = 4, at_most = 4"), "give one of at_least or at_most"),
    (lambda s: s.replace("replicates = 6", "replicates = 6\nseeds = 3"), "trial.seeds: unknown key"),
])
def test_bad_trial_input_is_refused_with_its_key(tmp_path, capsys, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(SMALL))
    with pytest.raises(CartkinError, match=message):
        Scenario.from_toml(path)
    assert main(["compare", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cartkin: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cli_replicates_option(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(SMALL)
    assert main(["compare", str(path), "-o", str(tmp_path / "out"), "--replicates", "3", "--no-plots"]) == 0
    assert "3 trials of 4 patients" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(tmp_path / "out" / "trials.csv")))) == 2 * 3
    assert main(["compare", str(path), "-o", str(tmp_path / "out"), "--replicates", "0"]) == 2
    no_trial = tmp_path / "n.toml"
    no_trial.write_text(SMALL.split("[trial]")[0])
    assert main(["compare", str(no_trial), "-o", str(tmp_path / "o2"), "--replicates", "3"]) == 2
    assert "has no [trial] table" in capsys.readouterr().err


def test_every_built_in_scenario_file_is_package_data():
    """pyproject's package-data patterns cover every file in scenario/builtin/ (so the wheel ships them)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cartkin"]
    package = root / "src" / "cartkin"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    files = [p for p in (package / "scenario" / "builtin").iterdir() if p.is_file()]
    assert {p.stem for p in files} >= set(list_scenarios()) and set(files) <= shipped
