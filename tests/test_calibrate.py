"""cartkin calibrate: recovery of known population parameters from synthetic targets, failures, bad input."""
import math

import numpy as np
import pytest

from cartkin import CartkinError
from cartkin.calibration import Targets, calibrate
from cartkin.calibration import statistics
from cartkin.cli import main
from cartkin.scenario import Scenario, compare

START = """
[scenario]
name = "synthetic"
model = "il10"
horizon_days = 60

[population]
n = 100
seed = 3

[population.variability]
rho = 20
kappa = 40
r_L = 30

[population.covariates]
L0 = { distribution = "lognormal", median = 2000, cv = 150 }

[outcomes.exposure]
observable = "car_blood"

[outcomes.response]
observable = "blast_pct"
relapse_days = [56]

[outcomes.crs]
observable = "il6"

[[arms]]
name = "a"
parameters = { armored = 0 }
regimen = { dose_per_kg = 1e6 }
"""

TRUE = {"rho": 1.4, "kappa": 35.0}

TARGETS = """
[calibration]
scenario = "start.toml"
seed = 11
proposal_size = 1500
final_size = 1500
rounds = 3

[calibration.parameters]
rho = {{ typical = [0.3, 4] }}
kappa = {{ typical = [5, 300] }}

[[arms]]
name = "x"
parameters = {{ armored = 0 }}
regimen = {{ dose_per_kg = 1e6 }}

{targets}
"""


def _synthetic_targets(tmp_path, n_target=1000):
    """Targets computed from a large population at the true typical values (a different seed)."""
    (tmp_path / "start.toml").write_text(START)
    data = Scenario.from_toml(tmp_path / "start.toml")
    text = START.replace("n = 100", "n = 8000").replace("seed = 3", "seed = 99")
    text = text.replace("[population.variability]", "[population.typical]\nrho = 1.4\nkappa = 35.0\n\n"
                        "[population.variability]")
    (tmp_path / "true.toml").write_text(text)
    outcomes = compare(Scenario.from_toml(tmp_path / "true.toml")).arms[0].outcomes
    assert data.model.name == "il10"
    blocks = []
    for statistic in ("response_pct", "crs_any_pct", "crs_grade3plus_pct", "cmax_gmean_of_responders",
                      "tmax_median_of_responders"):
        target = _one(statistic, n_target)
        sim = statistics.simulated(target, ("x",), [outcomes], [np.ones(outcomes["response"].size)])
        value = sim.value if target.kind != "pct" else round(sim.value / 100 * n_target)
        key = "count" if target.kind == "pct" else "value"
        blocks.append(f'[[targets]]\nstatistic = "{statistic}"\n{key} = {value!r}\nn = {n_target}\n')
    path = tmp_path / "targets.toml"
    path.write_text(TARGETS.format(targets="\n".join(blocks)))
    return path


def _one(statistic, n):
    from cartkin.calibration.spec import Target, parse_statistic
    column, kind, group = parse_statistic(statistic, "t", None)
    return Target(statistic, column, kind, group, ("x",), n, 50.0)


def test_calibration_recovers_known_typical_values(tmp_path):
    """From start values 1.0 and 60, the calibration finds rho 1.4 and kappa 35 within its 95% intervals,
    and every synthetic target is reproduced."""
    result = calibrate(Targets.from_toml(_synthetic_targets(tmp_path)))
    assert result.converged, result.reason
    for e in result.estimates:
        assert e.low <= TRUE[e.parameter] <= e.high, (e, result.reason)
        assert e.high / e.low < 2.0  # informative, not just wide
    assert all(r.inside for r in result.rows), result.summary_text()
    assert len(result.draws) == result.targets.draws
    draws = np.array([[d["rho"], d["kappa"]] for d in result.draws])
    assert abs(np.log(np.median(draws[:, 0]) / TRUE["rho"])) < 3 * result.estimates[0].se_log
    import cartkin
    assert [f.name for f in cartkin.plot(result, tmp_path / "figures")] == ["calibration.png"]
    # the same seed gives the same numbers
    again = calibrate(Targets.from_toml(tmp_path / "targets.toml"))
    assert [e.value for e in again.estimates] == [e.value for e in result.estimates]


def test_written_calibration_is_a_scenario_compare_runs(tmp_path):
    """calibrated.toml and its draws are read back as a scenario; a profile over a scale of rho peaks at
    the calibrated value (scale 1) and gives each count target's probability at every scale."""
    path = _synthetic_targets(tmp_path, n_target=200)
    path.write_text(path.read_text().replace("rounds = 3", "rounds = 3\n\n[calibration.profile]\n"
                                             "parameters = [\"rho\"]\nscales = [0.5, 1, 2]\nsize = 400", 1))
    out = tmp_path / "out"
    assert main(["calibrate", str(path), "-o", str(out), "--no-plots"]) == 0
    for name in ("targets.csv", "estimates.csv", "calibrated.toml", "calibrated_draws.csv"):
        assert (out / name).is_file()
    scenario = Scenario.from_toml(out / "calibrated.toml")
    header = (out / "calibrated_draws.csv").read_text().splitlines()[0].split(",")
    assert header == ["rho", "kappa"] and len(scenario.population.uncertainty) == 200
    assert scenario.population.typical["rho"] != 1.0
    rows = (out / "targets.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[0].startswith("target,arms,statistic,source")
    profile = (out / "profile.csv").read_text().splitlines()
    header = profile[0].split(",")
    loglik = [float(line.split(",")[1]) for line in profile[1:]]
    assert header[:2] == ["scale", "log_likelihood"] and len(loglik) == 3
    assert loglik[1] == max(loglik)
    assert any(h.startswith('"P(x = ') or h.startswith("P(x = ") for h in header)


def test_a_failed_calibration_is_reported_as_not_converged(tmp_path):
    """Two contradicting targets (99% and 1% responses in one arm) cannot both be met: the calibration
    moves as far as its small proposal lets it, says it did not converge and why, and names the misses."""
    (tmp_path / "start.toml").write_text(START)
    text = TARGETS.format(targets='[[targets]]\nstatistic = "response_pct"\ncount = 990\nn = 1000\n\n'
                                  '[[targets]]\nstatistic = "crs_any_pct"\ncount = 10\nn = 1000\n')
    text = text.replace("proposal_size = 1500", "proposal_size = 300\nmin_ess = 290")
    text = text.replace("final_size = 1500", "final_size = 300").replace("rounds = 3", "rounds = 1")
    (tmp_path / "t.toml").write_text(text)
    result = calibrate(tmp_path / "t.toml")
    assert not result.converged
    assert "effective sample size" in result.reason
    assert not all(r.inside for r in result.rows)
    assert "NOT converged" in result.summary_text()


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('statistic = "response_pct"', 'statistic = "respons_pct"'),
     "targets[1].statistic: unknown statistic 'respons_pct'"),
    (lambda s: s.replace('statistic = "response_pct"', 'statistic = "response_mean"'), "unknown statistic"),
    (lambda s: s.replace("count = 61", "count = 80"), "targets[1].count: 80 is more than n = 75"),
    (lambda s: s.replace("rho = {", "rhoo = {"), "calibration.parameters.rhoo: unknown parameter"),
    (lambda s: s.replace("rho = {", "k_act = {"), "k_act has no variability"),
    (lambda s: s.replace("[0.3, 4]", "[3, 4]"), "the start value 1 is outside"),
    (lambda s: s.replace("seed = 11", "seed = -1"), "calibration.seed: must be an integer"),
    (lambda s: s.replace('scenario = "start.toml"', 'scenario = "nope.toml"'), "scenario file not found"),
    (lambda s: s.replace("n = 75", ""), "targets[1].n: missing"),
    (lambda s: s.replace('name = "x"', 'name = "x"\ncolour = 1'), "arms[1].colour: unknown key"),
])
def test_bad_targets_files_exit_2_with_one_line(tmp_path, capsys, edit, message):
    (tmp_path / "start.toml").write_text(START)
    text = TARGETS.format(targets='[[targets]]\nstatistic = "response_pct"\ncount = 61\nn = 75\n')
    (tmp_path / "t.toml").write_text(edit(text))
    with pytest.raises(CartkinError) as err:
        Targets.from_toml(tmp_path / "t.toml")
    assert message in str(err.value)
    assert main(["calibrate", str(tmp_path / "t.toml"), "-o", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("cartkin: error: ") and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_shipped_targets_files_parse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eliana").mkdir()  # an output folder of that name does not hide the shipped file
    for name in ("eliana", "meta10-19"):
        targets = Targets.from_toml(name)
        assert targets.targets and all(t.source for t in targets.targets)


def test_statistics_follow_the_weights():
    """A weighted percentage is the weighted share; equal weights give the plain share and geometric mean."""
    from cartkin.calibration.spec import Target
    v = np.array([1.0, 0.0, 1.0, 1.0])
    t = Target("response_pct", "response", "pct", "", ("x",), 10, 50.0)
    assert statistics.simulated(t, ("x",), [{"response": v}], [np.ones(4)]).value == pytest.approx(75.0)
    assert statistics.simulated(t, ("x",), [{"response": v}], [np.array([0, 1, 0, 1.0])]).value == \
        pytest.approx(50.0)
    g = Target("cmax_gmean", "cmax", "gmean", "", ("x",), 10, 1.0)
    c = np.array([1.0, 10.0, 100.0, np.nan])
    assert statistics.simulated(g, ("x",), [{"cmax": c}], [np.ones(4)]).value == pytest.approx(10.0)
    assert math.isfinite(statistics.log_likelihood(g, statistics.simulated(g, ("x",), [{"cmax": c}], [np.ones(4)])))
