"""Regimen comparison: reproducibility, thread independence, biological sanity, scenario errors, CLI."""
import dataclasses
import io
import csv

import numba
import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.scenario import Scenario, compare, default_scenario

SMALL = 200


def small(scenario=None, n=SMALL, seed=None):
    scenario = scenario or default_scenario()
    population = dataclasses.replace(scenario.population, n=n, seed=scenario.population.seed if seed is None else seed)
    return dataclasses.replace(scenario, population=population, trial=None)  # trials: tests/test_trials.py


@pytest.fixture(scope="module")
def result():
    return compare(small(), progress=False)


def arm(res, name):
    return next(a for a in res.arms if a.arm.name == name)


def test_default_scenario_poses_the_meta_10_19_question():
    s = default_scenario()
    assert s.model.name == "il10" and s.population.n >= 1000
    doses = {(a.parameters["armored"], a.regimen.total_per_kg) for a in s.arms}
    assert doses == {(1, 1e5), (1, 2e5), (0, 1e5), (0, 2e5), (0, 1e6)}


def test_same_seed_gives_an_identical_summary(result):
    again = compare(small(), progress=False)
    assert str(again.summary) == str(result.summary)
    assert again.summary.rows == result.summary.rows
    other = compare(small(seed=99), progress=False)
    assert other.summary.rows != result.summary.rows


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads (one core here)")
def test_one_and_two_threads_give_identical_results():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = compare(small(), progress=False)
        numba.set_num_threads(2)
        two = compare(small(), progress=False)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one.arms, two.arms):
        for key in a.outcomes:
            np.testing.assert_array_equal(a.outcomes[key], b.outcomes[key])


@pytest.mark.xfail(strict=True, reason="known gap of the calibrated il10 (README, Calibration): median Cmax "
                   "falls with dose (about 0.5x from 0.1 to 1e6/kg in adults: a low dose clears leukaemia later "
                   "and expands longer), against Stein 2019's nearly flat Cmax; no dose-response target yet")
def test_dose_barely_moves_cmax(result):
    low = np.nanmedian(arm(result, "Conventional 0.1e6/kg").outcomes["cmax"])
    high = np.nanmedian(arm(result, "Conventional 1e6/kg (label-like)").outcomes["cmax"])
    assert 0.8 < high / low < 1.25  # a 10-fold dose range moves the peak by well under 25%


def test_il10_cells_persist_longer_than_conventional_at_the_same_dose(result):
    il10 = arm(result, "IL-10 CAR T 0.1e6/kg")
    conventional = arm(result, "Conventional 0.1e6/kg")
    t = il10.times
    late = t >= 180
    exposure = result.scenario.outcomes.get("exposure").observable  # CAR T in blood (copies in the built-in)
    # among patients who respond to both products (a non-responder's CAR T keep expanding against the
    # leukaemia, which is not persistence)
    both = (il10.outcomes["response"] > 0.5) & (conventional.outcomes["response"] > 0.5)
    assert both.sum() > 20
    il10_late, conventional_late = il10.curves[exposure][both][:, late], conventional.curves[exposure][both][:, late]
    assert np.nanmedian(il10_late) > 1.1 * np.nanmedian(conventional_late)
    # paired: most patients keep more CAR T cells at one year with IL-10
    assert np.mean(il10.curves[exposure][both, -1] > conventional.curves[exposure][both, -1]) > 0.8


def test_no_car_t_means_no_response():
    s = small(n=50)
    none = cartkin.scenario.Arm("no CAR T", cartkin.Regimen.none(), {"armored": 0})
    res = compare(dataclasses.replace(s, arms=(none,)), progress=False)
    assert np.all(res.arms[0].outcomes["response"] == 0)
    assert np.all(res.arms[0].outcomes["cmax"] < 1e-9)  # nothing above round-off (copies/µg)


def test_outputs_are_written(tmp_path, result):
    files = cartkin.write(result, tmp_path) + cartkin.plot(result, tmp_path)
    for f in files:
        assert f.exists() and f.stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["arm"] for r in rows] == [a.arm.name for a in result.arms]
    assert float(rows[0]["response_pct"]) > 50


BASE = """
[scenario]
name = "test"
model = "il10"
horizon_days = 60

[population]
n = 20
seed = 1

[population.variability]
rho = 20

[[arms]]
name = "a"
parameters = { armored = 1 }
regimen = { dose_per_kg = 1e5 }
"""


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("rho = 20", "rhoo = 20"), "population.variability.rhoo: unknown parameter 'rhoo'"),
    (lambda s: s.replace("dose_per_kg = 1e5", "dose_per_kg = -1e5"), "arms[1].regimen.dose_per_kg: must be >= 0"),
    (lambda s: s.replace('name = "a"\n', ""), "arms[1].name: missing"),
    (lambda s: s.replace("n = 20", 'n = "twenty"'), "population.n: must be an integer"),
    (lambda s: s.replace('model = "il10"', 'model = "il11"'), "scenario.model: unknown model 'il11'"),
    (lambda s: s.replace("armored = 1", "armoured = 1"), "arms[1].parameters.armoured: unknown parameter"),
    (lambda s: s.replace("horizon_days = 60", "horizon_days = 60\nhorizon = 3"), "scenario.horizon: unknown key"),
    (lambda s: s + "\n[outcomes]\nrelapse_days = [400]\n", "outcomes.relapse_days[0]: day 400 is beyond"),
    (lambda s: s.replace("[population]", "[population"), "not valid TOML"),
    (lambda s: s + "\n[population.omega]\nrho = 0.1\n", "population.omega.rho: rho also has a CV%"),
    (lambda s: s + "\n[population.omega]\nkappa = 1000\n", "population.omega.kappa: must be between 0 and 100"),
    (lambda s: s + "\n[population.covariate_table]\npath = \"pts.csv\"\ncolumns = { WTT = \"weight\" }\n",
     "population.covariate_table.columns.WTT: unknown parameter"),
    (lambda s: s + "\n[population.covariate_table]\npath = \"none.csv\"\ncolumns = { WT = \"weight\" }\n",
     "none.csv"),
    (lambda s: s + "\n[population.typical]\nrhoo = 1\n", "population.typical.rhoo: unknown parameter"),
    (lambda s: s + "\n[population.typical]\nf_blood = 2\n", "population.typical.f_blood: must be within"),
    (lambda s: s + "\n[population.uncertainty]\ndraws = \"none.csv\"\n", "population.uncertainty.draws: file not"),
])
def test_bad_scenarios_name_the_key(tmp_path, capsys, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(BASE))
    with pytest.raises(CartkinError) as err:
        Scenario.from_toml(path)
    assert message in str(err.value)
    assert main(["compare", str(path), "-o", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("cartkin: error: ") and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_omega_and_a_covariate_table_in_a_scenario_file(tmp_path, monkeypatch):
    """[population.omega] is the CV% of [population.variability] written as ω²; [population.covariate_table]
    draws whole rows of a CSV (looked up next to the scenario file), so covariates stay paired."""
    (tmp_path / "pts.csv").write_text("weight,blasts\n50,100\n80,3000\n65,800\n")
    text = BASE.replace("[population.variability]\nrho = 20\n", "[population.omega]\nrho = 0.0392207\n")
    text += '\n[population.covariate_table]\npath = "pts.csv"\ncolumns = { WT = "weight", L0 = "blasts" }\n'
    path = tmp_path / "s.toml"
    path.write_text(text)
    monkeypatch.chdir("/")  # the CSV is found beside the scenario file, not in the working folder
    spec = Scenario.from_toml(path).population
    assert spec.variability_cv["rho"] == pytest.approx(20.0, rel=1e-5)
    from cartkin.scenario.compare import population_for
    pop = population_for(Scenario.from_toml(path))
    P = pop.parameters()
    model = pop.model
    rows = {(w, l) for w, l in zip(P[:, model.parameter_index("WT")], P[:, model.parameter_index("L0")])}
    assert rows <= {(50.0, 100.0), (80.0, 3000.0), (65.0, 800.0)} and len(rows) > 1


def test_typical_values_and_calibration_draws_in_a_scenario_file(tmp_path):
    """[population.typical] moves typical values (arm parameters still override per arm, random effects
    kept); [population.uncertainty] draws = CSV gives one dict per posterior draw (PARAMETER, PARAMETER_cv)."""
    (tmp_path / "draws.csv").write_text("rho,rho_cv\n0.5,20\n0.7,25.5\n")
    text = BASE + '\n[population.typical]\nrho = 0.6\n\n[population.uncertainty]\ndraws = "draws.csv"\n'
    path = tmp_path / "s.toml"
    path.write_text(text)
    scenario = Scenario.from_toml(path)
    assert scenario.population.typical == {"rho": 0.6}
    assert scenario.population.uncertainty == ({"rho": 0.5, "rho_cv": 20.0}, {"rho": 0.7, "rho_cv": 25.5})
    from cartkin.scenario.compare import population_for
    base = population_for(scenario).parameters()
    plain = population_for(dataclasses.replace(scenario, population=dataclasses.replace(
        scenario.population, typical={}))).parameters()
    j = scenario.model.parameter_index("rho")
    default = scenario.model.parameter("rho").default
    assert np.allclose(base[:, j], plain[:, j] * 0.6 / default)
    (tmp_path / "draws.csv").write_text("rho,kappa_cv\n0.5,20\n")
    with pytest.raises(CartkinError, match="kappa has no variability"):
        Scenario.from_toml(path)
    (tmp_path / "draws.csv").write_text("rho,rho_cv\n0.5,x\n")
    with pytest.raises(CartkinError, match="line 2, column rho_cv: not a number"):
        Scenario.from_toml(path)


def test_cli_compare_runs_a_scenario_file(tmp_path, capsys):
    path = tmp_path / "ok.toml"
    path.write_text(BASE)
    assert main(["compare", str(path), "-o", str(tmp_path / "out"), "--no-plots"]) == 0
    assert "test" in capsys.readouterr().out
    assert (tmp_path / "out" / "summary.md").exists()


def test_cli_models_and_simulate(tmp_path, capsys):
    assert main(["models"]) == 0
    assert "stein2019" in capsys.readouterr().out
    assert main(["models", "il10"]) == 0
    printed = capsys.readouterr().out
    assert "e_mem" in printed
    for q in cartkin.load_model("il10").parameter_info:  # every parameter's unit and whole source
        line = next(row for row in printed.splitlines() if row.split()[:1] == [q.name])
        assert q.source in line and q.unit in line, line
    out = tmp_path / "one.csv"
    png = tmp_path / "one.png"
    assert main(["simulate", "--model", "il10", "--dose", "0.1e6", "--per-kg", "--days", "60",
                 "--param", "armored=0", "-o", str(out), "--plot", str(png)]) == 0
    header = out.read_text().splitlines()[0].split(",")
    model = cartkin.load_model("il10")
    assert header == ["time", *model.state_names, *model.observables]
    assert png.stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["models", "il11"], "unknown model"),
    (["simulate", "--param", "rho"], "expected NAME=VALUE"),
    (["simulate", "--param", "rhoo=1"], "unknown parameter 'rhoo'"),
    (["simulate", "--dose", "-5", "--per-kg"], "must not be negative"),
    (["simulate", "--days", "-1"], "--days"),
    (["simulate", "--param", "rho=nan"], "finite"),
    (["simulate", "--param", "rho=1,5"], "'5': expected NAME=VALUE"),        # a decimal comma is not taken
    (["simulate", "--param", "rho=1,rho=2"], "rho is given twice"),
    (["compare", "missing.toml"], "scenario file not found"),
    (["simulate", "--dose", "abc"], "invalid float value: 'abc'"),
    (["simulate", "--dose", "-1e5", "--per-kg"], "--dose=-1e5"),
    (["simulate", "--methd", "rodas"], "unrecognized arguments"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    assert main(argv + (["-o", str(tmp_path / "x.csv")] if argv[0] == "simulate" else [])) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_bar_only_on_a_terminal_and_only_for_long_work():
    from cartkin.progress import ProgressBar
    pipe, tty = _Stream(False), _Stream(True)
    for stream in (pipe, tty):
        bar = ProgressBar(10, "work", stream=stream, delay=0.0)
        for done in range(1, 11):
            bar(done)
    assert pipe.getvalue() == ""
    assert "work [" in tty.getvalue() and "10/10" in tty.getvalue() and tty.getvalue().endswith("\n")
    quick = _Stream(True)
    bar = ProgressBar(10, "quick", stream=quick, delay=60.0)  # finishes before the delay: never drawn
    for done in range(1, 11):
        bar(done)
    assert quick.getvalue() == ""


def test_summary_headers_carry_the_model_units(result):
    text = str(result.summary)
    assert "Cmax copies/µg gDNA" in text and "AUC0-28 copies/µg gDNA·d" in text and "IL-6 peak pg/mL" in text
    model = result.scenario.model
    assert model.unit("il10") == "pg/mL" and model.unit("E") == "cells/µL"
    with pytest.raises(CartkinError, match="unknown observable or state 'zz'"):
        model.unit("zz")


def test_cli_parameters_repeated_or_comma_separated_are_the_same(tmp_path):
    """--param a=1,b=2 is --param a=1 --param b=2 (as for --fix, --sigma, --prior and --map)."""
    base = ["simulate", "--model", "liu2022", "--days", "20"]
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(base + ["--param", "rTA0=1.1,lTA0=0.2", "-o", str(one)]) == 0
    assert main(base + ["--param", "rTA0=1.1", "--param", "lTA0=0.2", "-o", str(two)]) == 0
    default = tmp_path / "default.csv"
    assert main(base + ["-o", str(default)]) == 0
    assert one.read_text() == two.read_text() != default.read_text()

