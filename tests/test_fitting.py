"""Fitting: data validation, the M3 likelihood, sensitivities vs finite differences, parameter recovery."""
from pathlib import Path

import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.fitting import Dataset, Subject, augmented_model, fit, read_data
from cartkin.fitting.likelihood import negative_log_likelihood

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022"
LIU_OPTIONS = dict(column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"}, dvid_map={1: "nTA", 2: "nB"},
                   covariates={"Reg": "nB0"}, censor_floor=0.2)


@pytest.mark.skipif(not LIU.is_dir(), reason="../shared/data/liu2022 is not present")
def test_reads_the_liu2022_files_as_they_are():
    model = cartkin.load_model("liu2022")
    data = read_data([LIU / "Data_CR.csv"], model, **LIU_OPTIONS)
    assert len(data.subjects) == 14
    first = data.subjects[0]
    assert first.covariates == {"nB0": 774.0}
    assert 0.0 not in first.times  # baseline rows are not fitted
    assert np.all(first.limits[first.censored] == 0.2) and first.censored.sum() == 1
    assert set(data.observables_used) == {"nTA", "nB"}


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,7,nTA\n2,1,3,nTA\n"


@pytest.mark.parametrize("text, message", [
    ("ID,TIME,DVID\n1,1,nTA\n", "missing column DV"),
    ("ID,TIME,DV,DVID\n1,1,abc,nTA\n", "line 2: DV = 'abc' is not a number"),
    ("ID,TIME,DV,DVID\n1,-1,5,nTA\n", "negative TIME"),
    ("ID,TIME,DV,DVID\n1,2,5,nTA\n1,1,5,nTA\n", "before the previous nTA time"),
    ("ID,TIME,DV,DVID\n1,1,5,7\n", "unknown DVID '7'"),
    ("ID,TIME,DV,DVID\n1,1,5,nXX\n", "unknown DVID 'nXX'"),
    ("ID,TIME,DV,DVID,MDV\n1,1,5,nTA,1\n", "subject 1: no observations"),
    ("ID,TIME,DV,DVID\n1,1,,nTA\n", "DV is missing"),
    ("ID,TIME,DV,DVID,EVID,AMT\n1,0,.,nTA,1,-5\n1,1,5,nTA,0,.\n", "AMT >= 0"),
    ("ID,TIME,DV,DVID,Reg\n1,1,5,nTA,3\n1,2,5,nTA,4\n", "one value per subject"),
])
def test_bad_data_gets_a_one_line_error(tmp_path, text, message):
    model = cartkin.load_model("liu2022")
    with pytest.raises(CartkinError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_data(write(tmp_path, text), model, covariates={"Reg": "nB0"} if "Reg" in text else None)


def test_cli_fit_errors_exit_2(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert main(["fit", str(path), "--model", "liu2022", "--estimate", "rTA0,bogus", "-o", str(tmp_path)]) == 2
    assert "unknown parameter 'bogus'" in capsys.readouterr().err
    assert main(["fit", str(path), "--model", "liu2022", "--fix", "rTA0=-1", "-o", str(tmp_path)]) == 2
    assert "outside the bounds" in capsys.readouterr().err


def test_m3_term_is_the_log_normal_cdf_and_vanishes_far_below_the_limit():
    from scipy.stats import norm
    value, _, _ = negative_log_likelihood("proportional", np.array([2.0]), np.array([1.0]), np.array([True]),
                                          np.array([1.0]), np.array([np.log(0.5)]))
    assert value == pytest.approx(-norm.logcdf((np.log(1.0) - np.log(2.0)) / 0.5))
    tiny, _, _ = negative_log_likelihood("proportional", np.array([1e-6]), np.array([1.0]), np.array([True]),
                                         np.array([1.0]), np.array([np.log(0.5)]))
    assert 0 <= tiny < 1e-12


@pytest.mark.parametrize("kind, log_sigma", [("proportional", [np.log(0.4)]), ("additive", [0.1]),
                                             ("combined", [-1.0, np.log(0.2)])])
def test_likelihood_gradients_match_finite_differences(kind, log_sigma):
    rng = np.random.default_rng(0)
    f = rng.uniform(1, 10, 6)
    y = f * np.exp(rng.normal(0, 0.3, 6))
    cens = np.array([0, 0, 1, 0, 1, 0], bool)
    lim = np.where(cens, 3.0, np.nan)
    ls = np.array(log_sigma)
    _, d_pred, d_sigma = negative_log_likelihood(kind, f, y, cens, lim, ls)
    h = 1e-6
    for i in range(6):
        e = h * np.eye(6)[i]
        fd = (negative_log_likelihood(kind, f + e, y, cens, lim, ls)[0]
              - negative_log_likelihood(kind, f - e, y, cens, lim, ls)[0]) / (2 * h)
        assert d_pred[i] == pytest.approx(fd, rel=1e-5, abs=1e-7)
    for i in range(ls.size):
        e = h * np.eye(ls.size)[i]
        fd = (negative_log_likelihood(kind, f, y, cens, lim, ls + e)[0]
              - negative_log_likelihood(kind, f, y, cens, lim, ls - e)[0]) / (2 * h)
        assert d_sigma[i] == pytest.approx(fd, rel=1e-5, abs=1e-7)


FREE = ("rTA0", "lTA0", "eBp")


def test_sensitivities_match_finite_differences():
    model = cartkin.load_model("liu2022")
    augmented = augmented_model(model, FREE)
    times = np.array([1.0, 5, 10, 20, 40, 80])
    res = cartkin.simulate(augmented, None, times, rtol=1e-11, atol=1e-12)
    assert res.status.ok
    p = model.parameters
    for name in FREE:
        h = 1e-6 * p[name]
        up = cartkin.simulate(model, None, times, {name: p[name] + h}, rtol=1e-11, atol=1e-12)
        down = cartkin.simulate(model, None, times, {name: p[name] - h}, rtol=1e-11, atol=1e-12)
        for obs in ("nTA", "nB"):
            fd = (up.observable(obs) - down.observable(obs)) / (2 * h)
            np.testing.assert_allclose(res.observable(f"d_{obs}__d_{name}"), fd, rtol=1e-4, atol=1e-6)


def test_estimating_a_dose_scaling_parameter_is_refused_clearly():
    with pytest.raises(CartkinError, match="f_blood scales the dose"):
        augmented_model(cartkin.load_model("il10"), ["rho", "f_blood"])


def simulated_dataset(n_subjects, sigma, seed):
    """liu2022 subjects with known parameters, proportional noise and censoring at 0.2."""
    model = cartkin.load_model("liu2022")
    rng = np.random.default_rng(seed)
    times = np.array([1.0, 2, 4, 7, 10, 14, 21, 28, 42, 56, 84])
    truth = []
    subjects = []
    for i in range(n_subjects):
        true = {q: model.parameters[q] * np.exp(rng.normal(0, 0.2)) for q in FREE}
        truth.append(true)
        res = cartkin.simulate(model, None, times, true, rtol=1e-10, atol=1e-12)
        t_all, v_all, k_all = [], [], []
        for k, obs in enumerate(model.observables[:2]):
            y = res.observable(obs) * np.exp(rng.normal(0, sigma, times.size))
            t_all.append(times)
            v_all.append(y)
            k_all.append(np.full(times.size, k))
        t = np.concatenate(t_all)
        v = np.concatenate(v_all)
        k = np.concatenate(k_all)
        order = np.argsort(t, kind="stable")
        t, v, k = t[order], v[order], k[order]
        cens = v <= 0.2
        subjects.append(Subject(str(i + 1), t, np.where(cens, 0.2, v), k, cens, np.where(cens, 0.2, np.nan)))
    return model, Dataset(tuple(subjects), model.observables), truth


def test_fit_recovers_known_parameters_within_their_intervals(tmp_path):
    """30 replicate subjects × 3 parameters; residual SD known (fixed at its true value).

    With the SD estimated per subject from ~20 points, its downward small-sample bias narrows the
    intervals (coverage ~80% here): see the README's fitting notes."""
    model, data, truth = simulated_dataset(30, sigma=0.2, seed=5)
    assert sum(s.censored.sum() for s in data.subjects) > 0  # censoring is exercised
    result = fit(model, data, estimate=FREE, starts=2, seed=1, sigma={"sigma_nTA": 0.2, "sigma_nB": 0.2})
    inside = []
    for subject_fit, true in zip(result.fits, truth):
        assert subject_fit.converged, subject_fit.warnings
        for j, name in enumerate(FREE):
            inside.append(subject_fit.lower[j] <= true[name] <= subject_fit.upper[j])
            assert subject_fit.estimates[j] == pytest.approx(true[name], rel=0.5)
    coverage = np.mean(inside)
    assert coverage >= 0.9, coverage
    files = result.write(tmp_path) + result.plot(tmp_path)
    assert all(Path(f).stat().st_size > 0 for f in files)
    header = (tmp_path / "estimates.csv").read_text().splitlines()[0]
    assert "rTA0_lower" in header and "converged" in header
