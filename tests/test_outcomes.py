"""Comparison outcomes registry: scenario tables, older flat keys, errors, a new outcome as one entry."""
import csv
import re
import dataclasses
import tomllib
from importlib import resources

import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.scenario import Scenario, compare, default_scenario
from cartkin.scenario import outcomes as registry
from cartkin.scenario.outcomes import Display, Outcome, Statistic, setting
from cartkin.table import quantile_text

DEFAULT = resources.files("cartkin.scenario").joinpath("builtin", "meta10-19.toml").read_text(encoding="utf-8")
HEAD = DEFAULT[:DEFAULT.index("[outcomes")]
ARMS = DEFAULT[DEFAULT.index("[[arms]]"):DEFAULT.index("[trial]")]  # without the trial replicates (slow)

FLAT = """[outcomes]
exposure = "car_copies"
limit = 50
response_day = 28
response_threshold = 5.0
mrd_threshold = 0.01
relapse_days = [182.5, 365]
aplasia_fraction = 0.1
"""


def scenario_with(outcomes: str, n: int = 30, horizon: float | None = None) -> Scenario:
    text = HEAD + outcomes + "\n" + ARMS
    if horizon is not None:
        text = text.replace("horizon_days = 365", f"horizon_days = {horizon:g}")
    s = Scenario.from_dict(tomllib.loads(text))
    return dataclasses.replace(s, population=dataclasses.replace(s.population, n=n), arms=s.arms[:2])


def test_the_built_in_scenario_lists_its_outcomes_as_tables():
    o = default_scenario().outcomes
    assert o.names == ("exposure", "response", "aplasia", "crs", "relapse_type", "peak")
    assert o.get("aplasia").baseline == "B0" and o.get("peak").observables == ("il6", "il10")
    assert o.get("missing") is None and "peak" in o and "missing" not in o


def test_older_flat_keys_give_the_same_outcomes_as_the_tables():
    assert scenario_with(FLAT).outcomes == default_scenario().outcomes
    changed = scenario_with(FLAT.replace("limit = 50", "limit = 0.5").replace('exposure = "car_copies"',
                                                                                'exposure = "E"'))
    assert changed.outcomes.get("exposure") == registry.ExposureSettings(observable="E", limit=0.5)
    no_blast = scenario_with('[outcomes]\nblast = ""\n').outcomes
    assert no_blast.names == ("exposure", "aplasia", "crs", "relapse_type", "peak")


def test_default_days_beyond_a_short_horizon_are_dropped_given_ones_are_errors():
    short = scenario_with("", horizon=60).outcomes.get("response")
    assert short.relapse_days == () and short.day == 28
    shorter = scenario_with("", horizon=20).outcomes.get("response")
    assert shorter.day == 20
    with pytest.raises(CartkinError, match=r"outcomes.response.relapse_days\[1\]: day 90 is beyond"):
        scenario_with('[outcomes.response]\nobservable = "blast_pct"\nrelapse_days = [30, 90]\n', horizon=60)


def test_only_the_listed_outcomes_run_and_their_columns_follow_the_settings(tmp_path):
    s = scenario_with('[outcomes.peak]\nobservables = ["il10"]\nlabels = { il10 = "IL10" }\n\n'
                      '[outcomes.aplasia]\nobservable = "b_cells"\nbaseline = "B0"\nfraction = 0.5\n')
    result = compare(s, progress=False)
    columns = result.summary.columns
    assert [c for c in columns if c not in ("arm", "regimen", "n", "failed")] == [
        "peak_il10_median", "peak_il10_p05", "peak_il10_p95",
        "aplasia_days_median", "aplasia_days_p05", "aplasia_days_p95"]
    assert "IL10 peak pg/mL" in str(result.summary) and "aplasia d" in str(result.summary)
    assert set(result.arms[0].outcomes) == {"peak_il10", "aplasia_days"}
    # a higher fraction of baseline means longer aplasia than the built-in 10%
    half = np.nanmedian(result.arms[0].outcomes["aplasia_days"])
    tenth = np.nanmedian(compare(scenario_with(FLAT), progress=False).arms[0].outcomes["aplasia_days"])
    assert half > tenth
    files = cartkin.write(result, tmp_path) + cartkin.plot(result, tmp_path)
    assert {f.name for f in files} == {"summary.csv", "summary.md", "patients.csv"}  # no exposure, no blasts
    assert "days with `b_cells` below 0.5 × B0" in (tmp_path / "summary.md").read_text()


def test_a_model_without_the_il10_observables_lists_its_own_outcomes(tmp_path):
    text = """
[scenario]
model = "stein2019"
horizon_days = 100

[population]
n = 10

[outcomes.exposure]
observable = "C"
limit = 1

[[arms]]
name = "a"
regimen = { none = true }
"""
    s = Scenario.from_dict(tomllib.loads(text))
    result = compare(s, progress=False)
    assert "cmax_median" in result.summary.columns and "response_pct" not in result.summary.columns
    assert np.all(np.isfinite(result.arms[0].outcomes["cmax"]))
    assert [p.name for p in cartkin.plot(result, tmp_path)] == ["kinetics.png", "exposure.png"]
    with pytest.raises(CartkinError, match="model stein2019 has none of the built-in scenario's outcome"):
        Scenario.from_dict(tomllib.loads(text[:text.index("[outcomes")] + text[text.index("[[arms]]"):]))


@pytest.mark.parametrize("outcomes, message", [
    ('[outcomes.peak]\nobservables = ["il7"]\n', "outcomes.peak.observables: unknown observable 'il7'"),
    ('[outcomes.aplasia]\nobservable = "b_cells"\nbaseline = "B9"\n',
     "outcomes.aplasia.baseline: unknown parameter 'B9'"),
    ('[outcomes.aplasia]\nobservable = "b_cells"\n', "outcomes.aplasia.baseline: missing (required)"),
    ('[outcomes]\nblast = "blasts"\n', "outcomes.blast: unknown observable 'blasts'"),
    ('[outcomes]\nlimit = -1\n', "outcomes.limit: must be > 0"),
    ('[outcomes]\nlimitt = 1\n', "outcomes.limitt: unknown key"),
    ('[outcomes.exposure]\nobservable = "car_blood"\nlimitt = 1\n', "outcomes.exposure.limitt: unknown key"),
    ('[outcomes.exposure]\nobservable = 3\n', "outcomes.exposure.observable: must be a string"),
    ('[outcomes.toxicity]\nobservable = "il6"\n', "outcomes.toxicity: unknown outcome 'toxicity'"),
    ('[outcomes]\nlimit = 1\n[outcomes.peak]\nobservables = ["il6"]\n',
     "outcomes.limit: with outcome tables, give it as limit in [outcomes.exposure]"),
    ('[outcomes.peak]\nobservables = ["il6"]\nlabels = { il10 = "IL-10" }\n',
     "outcomes.peak.labels: 'il10' is not one of observables"),
    ('[outcomes.response]\nobservable = "blast_pct"\nrelapse_days = [100, -1]\n',
     "outcomes.response.relapse_days[1]: must be > 0"),
])
def test_bad_outcomes_name_the_key(tmp_path, capsys, outcomes, message):
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + outcomes + "\n" + ARMS)
    with pytest.raises(CartkinError) as err:
        Scenario.from_toml(path)
    assert message in str(err.value)
    assert main(["compare", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@dataclasses.dataclass(frozen=True)
class TroughSettings:
    observable: str = setting(refers_to="observable")
    day: float = setting(28.0, check="positive", day=True)


def _trough(times, observables, parameters, s):
    return {"trough": observables[s.observable][:, np.searchsorted(times, s.day)]}


TROUGH = Outcome("trough", TroughSettings, _trough,
                 summary=lambda s, scenario: ([Statistic("trough")],
                                              [Display(f"trough d{s.day:g}", lambda r: quantile_text(r, "trough"))]),
                 text=lambda s, scenario: f"Trough: `{s.observable}` on day {s.day:g}.")


def test_a_new_outcome_is_one_registry_entry(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.REGISTRY, "trough", TROUGH)
    path = tmp_path / "trough.toml"
    path.write_text(HEAD.replace("n = 1000", "n = 25") + '[outcomes.trough]\nobservable = "car_blood"\nday = 60\n\n'
                    + ARMS)
    assert main(["compare", str(path), "-o", str(tmp_path / "out"), "--no-plots"]) == 0
    summary = list(csv.DictReader(open(tmp_path / "out" / "summary.csv", encoding="utf-8")))
    patients = list(csv.DictReader(open(tmp_path / "out" / "patients.csv", encoding="utf-8")))
    assert list(summary[0])[4:] == ["trough_median", "trough_p05", "trough_p95"]
    assert list(patients[0]) == ["arm", "patient", "ok", "trough"]
    assert float(summary[0]["trough_median"]) > 0 and len(patients) == 25 * 5
    first = [float(p["trough"]) for p in patients if p["arm"] == summary[0]["arm"]]
    assert float(summary[0]["trough_median"]) == pytest.approx(np.median(first), rel=1e-5)
    report = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert re.search(r"\|\s*trough d60\s*\|", report) and "Trough: `car_blood` on day 60." in report
    with pytest.raises(CartkinError, match="outcomes.trough.observable: unknown observable 'cars'"):
        Scenario.from_dict(tomllib.loads(HEAD + '[outcomes.trough]\nobservable = "cars"\n' + ARMS))
    with pytest.raises(CartkinError, match="already registered"):
        registry.register(TROUGH)


def test_crs_relapse_type_and_aplasia_on_a_day_reach_the_tables(tmp_path):
    """The built-in scenario reports CRS any/≥3 %, the CD19− share of relapses and aplasia at day 182.5,
    and each summary percentage is what patients.csv gives."""
    import csv
    import dataclasses

    import cartkin
    from cartkin.scenario import default_scenario
    scenario = default_scenario()
    scenario = dataclasses.replace(scenario, population=dataclasses.replace(scenario.population, n=60), trial=None)
    comparison = cartkin.compare(scenario, progress=False)
    cartkin.write(comparison, tmp_path)
    with open(tmp_path / "summary.csv") as fh:
        summary = {row["arm"]: row for row in csv.DictReader(fh)}
    with open(tmp_path / "patients.csv") as fh:
        patients = list(csv.DictReader(fh))
    for arm, row in summary.items():
        mine = [p for p in patients if p["arm"] == arm and p["ok"] == "1"]
        grades = [float(p["crs_grade"]) for p in mine]
        # summary.csv holds 6 significant digits
        assert float(row["crs_any_pct"]) == pytest.approx(100 * np.mean([g >= 1 for g in grades]), rel=1e-5)
        assert float(row["crs_grade3plus_pct"]) == pytest.approx(100 * np.mean([g >= 3 for g in grades]), rel=1e-5)
        assert {p["relapse_type"] for p in mine} <= {"", "cd19neg", "cd19pos"}
        typed = [p["relapse_type"] == "cd19neg" for p in mine if p["relapse_type"]]
        expected = 100 * np.mean(typed) if typed else float("nan")
        assert float(row["relapse_cd19neg_pct"]) == pytest.approx(expected, rel=1e-5, nan_ok=True)
        relapsed = [p for p in mine if p["relapse_day"] not in ("", "nan")]
        assert len(typed) == len(relapsed)  # every relapse is typed, nothing else is
        assert float(row["aplasia_182_pct"]) == pytest.approx(
            100 * np.mean([float(p["aplasia_182"]) > 0.5 for p in mine]), rel=1e-5)
    assert "CRS grade from peak `il6`" in (tmp_path / "summary.md").read_text()
