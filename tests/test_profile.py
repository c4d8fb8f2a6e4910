"""Profile-likelihood intervals: against the truth and the Wald interval on a simulated subject, the
profile at the estimate, open intervals for a parameter the data cannot see, outputs, CLI errors."""
import csv
import math

import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.data import Dataset
from cartkin.estimation import fit
from cartkin.estimation.individual.profile import CHI2_95

FREE = ("rTA0", "lTA0", "eBp")
TIMES = np.array([1.0, 2, 4, 7, 10, 14, 21, 28, 42, 56, 84])


def simulated_subject(truth, sigma=0.2, seed=0):
    """One liu2022 subject: nTA and nB at TIMES with log-normal noise, values <= 0.2 censored."""
    model = cartkin.load_model("liu2022")
    res = cartkin.simulate(model, None, TIMES, truth, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(seed)
    times, values, names = [], [], []
    for obs in ("nTA", "nB"):
        times.append(TIMES)
        values.append(res.observable(obs) * np.exp(rng.normal(0, sigma, TIMES.size)))
        names += [obs] * TIMES.size
    return model, Dataset.from_arrays(model, ["1"] * len(names), np.concatenate(times), np.concatenate(values),
                                      names, censor_floor=0.2)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    model = cartkin.load_model("liu2022")
    truth = {"rTA0": 1.9, "lTA0": 0.15, "eBp": 18.0}
    model, data = simulated_subject(truth, seed=4)
    assert data.n_censored > 0  # the M3 term is part of the profiled likelihood
    result = fit(model, data, estimate=FREE, starts=2, profile=("rTA0", "eBp"))
    outdir = tmp_path_factory.mktemp("profile")
    files = cartkin.write(result, outdir) + cartkin.plot(result, outdir)
    return result, truth, outdir, files


def test_profile_interval_contains_truth_and_agrees_with_wald(profiled):
    result, truth, _, _ = profiled
    fit_ = result.fits[0]
    assert fit_.converged, fit_.warnings
    assert [(p.id, p.parameter) for p in result.profiles] == [("1", "rTA0"), ("1", "eBp")]
    for pr in result.profiles:
        k = fit_.names.index(pr.parameter)
        assert pr.lower < truth[pr.parameter] < pr.upper
        assert not pr.lower_open and not pr.upper_open and not pr.warnings
        assert pr.lower < pr.estimate < pr.upper
        # well identified: each end within 30% of the Wald end's distance from the estimate (log scale)
        for profile_end, wald_end in ((pr.lower, fit_.lower[k]), (pr.upper, fit_.upper[k])):
            wald_width = abs(math.log(wald_end / pr.estimate))
            assert abs(math.log(profile_end / pr.estimate)) == pytest.approx(wald_width, rel=0.3)
        # the ends are crossings: the profile point found there is at the threshold
        for end in (pr.lower, pr.upper):
            i = int(np.argmin(np.abs(np.log(pr.values / end))))
            assert pr.deviance[i] == pytest.approx(CHI2_95, abs=0.02)
        # a minimum at the estimate: re-optimising there reproduces the fit, nothing lies below it
        i_hat = int(np.argmin(np.abs(pr.values - pr.estimate)))
        assert pr.values[i_hat] == pytest.approx(pr.estimate, rel=1e-12)
        assert pr.objectives[i_hat] == pytest.approx(fit_.objective, abs=1e-6)
        assert np.all(pr.deviance > -1e-6)
        # the profile rises monotonically away from the estimate on both sides
        assert np.all(np.diff(pr.deviance[:i_hat + 1]) < 1e-6) and np.all(np.diff(pr.deviance[i_hat:]) > -1e-6)


def test_profile_outputs(profiled):
    result, _, outdir, files = profiled
    names = {f.name for f in files}
    assert {"profiles.csv", "profile_likelihood.png"} <= names
    assert (outdir / "profile_likelihood.png").stat().st_size > 10_000
    with open(outdir / "estimates.csv") as fh:
        row = next(csv.DictReader(fh))
    with open(outdir / "profiles.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["ID", "parameter", "value", "objective"]
    for pr in result.profiles:
        assert float(row[f"{pr.parameter}_profile_lower"]) == pytest.approx(pr.lower, rel=1e-5)
        assert float(row[f"{pr.parameter}_profile_upper"]) == pytest.approx(pr.upper, rel=1e-5)
        mine = [r for r in rows if r["parameter"] == pr.parameter]
        assert len(mine) == pr.values.size and all(r["ID"] == "1" for r in mine)
    assert "lTA0_profile_lower" not in row  # only the parameters asked for


def test_parameter_the_data_cannot_see_has_an_open_profile_interval():
    """lTN (loss of non-activated cells, 3e-5/d) is negligible beside activation: any smaller value fits
    as well, so the profile never crosses below the estimate before the 1000-fold search bound."""
    model, data = simulated_subject({"rTA0": 1.9, "lTA0": 0.15, "eBp": 18.0}, seed=2)
    result = fit(model, data, estimate=("rTA0", "lTA0", "lTN"), starts=1, profile="lTN",
                 sigma={"sigma_nTA": 0.2, "sigma_nB": 0.2})
    (pr,) = result.profiles
    assert pr.lower_open and pr.lower == 0.0
    assert any("open below" in w for w in pr.warnings)
    search_bound = model.parameters["lTN"] / 1000
    assert pr.values.min() == pytest.approx(search_bound, rel=1e-9)
    assert pr.deviance[0] < CHI2_95
    assert "open below" in result.estimates_table().rows[0]["warnings"]


def test_bad_profile_names():
    model, data = simulated_subject({"rTA0": 1.9}, seed=1)
    with pytest.raises(CartkinError, match="unknown parameter 'bogus'"):
        fit(model, data, estimate=FREE, profile=("bogus",))
    with pytest.raises(CartkinError, match="KBp: not a free parameter"):
        fit(model, data, estimate=FREE, profile=("KBp",))


@pytest.mark.parametrize("names, message", [("rTA0,bogus", "unknown parameter 'bogus'"),
                                            ("KBp", "not a free parameter of this fit")])
def test_cli_bad_profile_name_is_one_line_exit_2(tmp_path, capsys, names, message):
    path = tmp_path / "d.csv"
    path.write_text("ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,7,nTA\n")
    code = main(["fit", str(path), "--model", "liu2022", "--estimate", "rTA0,lTA0", "--profile", names,
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("cartkin: error: --profile") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before fitting
