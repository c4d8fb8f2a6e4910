"""Fitting: CLI errors, sensitivities vs finite differences, parameter recovery (data and likelihood have\ntheir own test files)."""
from pathlib import Path

import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.data import Dataset, Subject
from cartkin.estimation import augmented_model, fit

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022"
LIU_OPTIONS = dict(column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"}, dvid_map={1: "nTA", 2: "nB"},
                   covariates={"Reg": "nB0"}, censor_floor=0.2)


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,7,nTA\n2,1,3,nTA\n"


def test_cli_fit_errors_exit_2(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert main(["fit", str(path), "--model", "liu2022", "--estimate", "rTA0,bogus", "-o", str(tmp_path / "out")]) == 2
    assert "unknown parameter 'bogus'" in capsys.readouterr().err
    assert main(["fit", str(path), "--model", "liu2022", "--fix", "rTA0=-1", "-o", str(tmp_path / "out")]) == 2
    assert "outside the bounds" in capsys.readouterr().err
    for bad in (["--seed", "-1"], ["--starts", "0"], ["--population", "--vpc", "--replicates", "5"]):
        outdir = tmp_path / "out"
        assert main(["fit", str(path), "--model", "liu2022", "-o", str(outdir)] + bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("cartkin: error: --") and len(err.strip().splitlines()) == 1
        assert not outdir.exists()


def test_a_failed_command_leaves_no_half_written_folder(tmp_path):
    from cartkin.report.output import staged_folder
    target = tmp_path / "fit"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(target) as stage:
            (stage / "estimates.csv").write_text("half")
            raise RuntimeError("plot failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with staged_folder(target) as stage:
        (stage / "estimates.csv").write_text("new")
        (stage / "keep.txt").write_text("replaced")
    assert (target / "estimates.csv").read_text() == "new" and (target / "keep.txt").read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]


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


@pytest.mark.parametrize("name, regimen", [
    ("f_blood", cartkin.Regimen([cartkin.Infusion(d, dose_per_kg=x) for d, x in ((0, 1e5), (1, 3e5), (2, 6e5))])),
    ("f_blood", cartkin.Regimen([cartkin.Infusion(0, cells=2e7), cartkin.Infusion(1, cells=5e7)])),
    ("WT", cartkin.Regimen([cartkin.Infusion(0, cells=2e7), cartkin.Infusion(1, cells=5e7),
                            cartkin.Infusion(2, dose_per_kg=2e5)])),
])
def test_dose_scaling_sensitivities_match_finite_differences(name, regimen):
    """A dose scaled by a parameter makes its sensitivity states jump at each infusion."""
    model = cartkin.load_model("il10")
    free = (name, "rho")
    augmented = augmented_model(model, free)
    times = np.array([0.5, 1.5, 2.5, 5, 10, 20])
    res = cartkin.simulate(augmented, regimen, times, rtol=1e-11, atol=1e-12)
    assert res.status.ok
    p = model.parameters
    h = 1e-5 * p[name]
    up = cartkin.simulate(model, regimen, times, {name: p[name] + h}, rtol=1e-11, atol=1e-12)
    down = cartkin.simulate(model, regimen, times, {name: p[name] - h}, rtol=1e-11, atol=1e-12)
    fd = (up.observable("car_blood") - down.observable("car_blood")) / (2 * h)
    assert np.all(np.abs(fd) > 0)
    np.testing.assert_allclose(res.observable(f"d_car_blood__d_{name}"), fd, rtol=1e-4)
    # the states themselves are those of the model (to the tolerance: the step sizes differ)
    np.testing.assert_allclose(res.observable("car_blood"), cartkin.simulate(
        model, regimen, times, rtol=1e-11, atol=1e-12).observable("car_blood"), rtol=1e-8)


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
    files = cartkin.write(result, tmp_path) + cartkin.plot(result, tmp_path)
    assert all(Path(f).stat().st_size > 0 for f in files)
    header = (tmp_path / "estimates.csv").read_text().splitlines()[0]
    assert "rTA0_lower" in header and "converged" in header
    correlations = (tmp_path / "correlations.csv").read_text().splitlines()
    assert correlations[0] == "ID,parameter,with,correlation" and len(correlations) == 1 + 30 * 3
    first = result.fits[0]
    assert correlations[1].split(",")[1:] == ["rTA0", "lTA0", f"{first.correlation[0, 1]:.4g}"]
    assert -1 <= first.correlation[0, 1] <= 1


def test_pooled_sigma_is_the_joint_optimum_and_recovers_the_truth(tmp_path):
    """One residual SD per observable shared by all subjects: near the truth, and no other σ's (with every
    subject refitted) give a lower total −log L."""
    model, data, truth = simulated_dataset(6, sigma=0.3, seed=11)
    result = fit(model, data, estimate=FREE, starts=2, seed=1, pooled_sigma=True)
    assert all(f.converged for f in result.fits), [f.warnings for f in result.fits]
    assert all(f.names == FREE for f in result.fits)  # the σ's are not per-subject estimates
    pooled = {name: (value, se) for name, value, se in result.pooled_sigma}
    assert set(pooled) == {"sigma_nTA", "sigma_nB"}
    for value, se in pooled.values():
        assert 0 < se < 0.3
        assert abs(np.log(value / 0.3)) < 3 * se + 0.1  # ML shrinks σ by ~sqrt(1 - 18/132) ≈ 0.93
    assert result.n_parameters == 6 * len(FREE) + 2
    assert result.aic == pytest.approx(2 * result.objective + 2 * result.n_parameters)
    for factor in (0.9, 1.1):
        other = fit(model, data, estimate=FREE, starts=2, seed=1,
                    sigma={n: v * factor for n, (v, _) in pooled.items()})
        assert other.objective > result.objective
    cartkin.write(result, tmp_path)
    header = (tmp_path / "estimates.csv").read_text().splitlines()[0].split(",")
    assert "sigma_nTA" in header and "sigma_nTA_upper" in header


def test_fit_recovers_a_dose_scaling_parameter():
    """il10's f_blood (the blood fraction of the infused cells) is estimable: data simulated with f_blood 0.03
    (default 0.02) after a split dose; estimated with rho, the truth lies within the 95% interval."""
    model = cartkin.load_model("il10")
    regimen = cartkin.Regimen([cartkin.Infusion(d, dose_per_kg=x) for d, x in ((0, 1e5), (1, 3e5), (2, 6e5))])
    times = np.array([1.0, 2, 3, 5, 7, 10, 14, 21])
    k = model.observables.index("car_blood")
    rng = np.random.default_rng(2)
    truth = {"f_blood": 0.03, "rho": 1.2}
    clean = cartkin.simulate(model, regimen, times, truth, rtol=1e-10, atol=1e-12).observable("car_blood")
    values = clean * np.exp(rng.normal(0, 0.1, times.size))
    subject = Subject("1", times, values, np.full(times.size, k), np.zeros(times.size, bool),
                      np.full(times.size, np.nan))
    result = fit(model, Dataset((subject,), model.observables), estimate=["f_blood", "rho"], regimen=regimen,
                 starts=2, sigma={"sigma_car_blood": 0.1})
    one = result.fits[0]
    assert one.converged, one.warnings
    for j, name in enumerate(("f_blood", "rho")):
        assert one.lower[j] <= truth[name] <= one.upper[j], (name, one.estimates[j], one.lower[j], one.upper[j])
    assert one.estimates[0] == pytest.approx(0.03, rel=0.2) and one.upper[0] / one.lower[0] < 2


def test_the_sensitivity_model_doses_its_sensitivity_states():
    """Per cell/kg, S_N,f_blood jumps by ∂per_kg/∂f_blood = 1/70000; per cell of a flat dose, S_N,WT jumps by
    ∂(per_kg/WT)/∂WT = -f_blood/(70000 WT²) (the generated kernel evaluates these)."""
    from cartkin.codegen import compile_model
    from cartkin.model.definition import DoseInput, Model
    model = cartkin.load_model("il10")
    augmented = augmented_model(model, ("f_blood", "WT", "rho"))
    assert dict(augmented.dose.increments).keys() == {"S_N__f_blood"}
    assert dict(augmented.dose.flat_increments).keys() == {"S_N__WT"}
    assert augmented_model(model, ("rho",)).dose is model.dose  # no dose parameter: the same single target
    p = np.array([q.default for q in augmented.parameter_info])
    inc = np.zeros((2, augmented.n_states()))
    compile_model(augmented).dose_increments(p, inc)
    names = augmented.state_names
    f_blood, wt = model.parameters["f_blood"], model.parameters["WT"]
    assert inc[0, names.index("N")] == f_blood / 70000 and inc[0, names.index("S_N__f_blood")] == 1 / 70000
    assert inc[1, names.index("S_N__WT")] == pytest.approx(-f_blood / 70000 / wt ** 2, rel=1e-14)
    assert np.count_nonzero(inc) == 3
    with pytest.raises(CartkinError, match="not a state other than the target"):
        Model("m", model.states, model.parameter_info, model.equations,
              dose=DoseInput("N", model.dose.per_kg, increments={"nope": 1}))


def test_observed_information_retries_smaller_steps_only_where_they_agree():
    """Differences of the gradient over 1e-4 can turn a sharply curved minimum into a spurious saddle
    (the leukaemia of some Liu patients is killed abruptly between two samples); smaller steps that agree
    with each other give the curvature back, and a real saddle stays a saddle."""
    from cartkin.estimation.individual.fit import _observed_information
    delta = 1e-4 / (1.5 * np.pi)   # differences over 1e-4 see sin(u)/u = -0.21 of the wiggle's curvature
    eps = 10 * delta ** 2          # true curvature along x0: 1 + eps/delta² = 11

    def sharp(x):
        g = np.array([x[0] + eps / delta * np.sin(x[0] / delta), 2.0 * x[1]])
        return 0.0, g
    x = np.zeros(2)
    naive = (sharp(x + [1e-4, 0])[1][0] - sharp(x - [1e-4, 0])[1][0]) / 2e-4
    assert naive < 0  # the spurious negative curvature the retry is for
    H = _observed_information(sharp, x, np.array([0, 1]))
    assert H[0, 0] == pytest.approx(11.0, rel=0.05) and H[1, 1] == pytest.approx(2.0)

    def saddle(x):
        return 0.0, np.array([x[0], -x[1]])
    H = _observed_information(saddle, x, np.array([0, 1]))
    assert np.linalg.eigvalsh(H).min() < 0
    # restricted to the parameters not held at a bound
    assert _observed_information(saddle, x, np.array([0])).shape == (1, 1)
