"""Fits to real patients (Liu 2022, ../shared/data/liu2022): two complete-remission patients with the
README's real-data settings converge and describe their CAR T data far better than the published
parameters do. Skipped when the shared data are absent."""
import math
from pathlib import Path

import numpy as np
import pytest

import cartkin
from cartkin.data import Dataset, read_data
from cartkin.estimation import fit

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022"
pytestmark = pytest.mark.skipif(not (LIU / "Data_CR.csv").is_file(),
                                reason="the Liu 2022 data (../shared/data/liu2022) are not present")
FREE = ("rTA0", "lTA0", "eBp", "nTN0")  # as examples/fit_liu2022.py and the README


def log10_rmse(model, subject, parameters, observable="nTA", regimen=None):
    """RMSE of log10 observed − log10 predicted over the subject's measured (uncensored) CAR T values."""
    sel = (subject.observable_index == model.observables.index(observable)) & ~subject.censored
    res = cartkin.simulate(model, regimen, subject.times[sel], dict(zip(model.parameter_names, parameters)),
                           rtol=1e-8, atol=1e-10)
    d = np.log10(subject.values[sel]) - np.log10(res.observable(observable))
    return math.sqrt(np.mean(d * d))


def test_two_real_patients_converge_with_a_sane_fit():
    model = cartkin.load_model("liu2022")
    data = read_data(LIU / "Data_CR.csv", model, column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"},
                     dvid_map={1: "nTA", 2: "nB"}, covariates={"Reg": "nB0"}, censor_floor=0.2)
    two = Dataset(tuple(data.subject(i) for i in ("1", "12")), data.observables)
    result = fit(model, two, estimate=FREE, pooled_sigma=True)
    assert [f.id for f in result.fits] == ["1", "12"]
    for f, subject in zip(result.fits, two.subjects):
        assert f.converged, (f.id, f.message, f.warnings)
        # an estimate held at the search box (patient 12's nTN0, at 1/1000 of its default) is a constrained
        # one and has no SE; every other estimate has one
        held = np.array([f"{name} at its bound" in f.warnings for name in f.names])
        assert np.all(np.isfinite(f.standard_errors[~held])) and np.all(np.isnan(f.standard_errors[held]))
        fitted = log10_rmse(model, subject, f.parameters)
        published = log10_rmse(model, subject, result.problem.base_parameters(subject))
        assert fitted < 0.6  # within a factor of 4 on average, on data spanning four decades
        assert fitted < 0.5 * published, (fitted, published)
    sigmas = dict((n, v) for n, v, _ in result.pooled_sigma)
    assert set(sigmas) == {"sigma_nTA", "sigma_nB"} and all(0.05 < v < 10 for v in sigmas.values())


def test_il10_map_on_real_patients_converges_in_physiological_ranges():
    """il10 on CAR T and leukaemia of CR patients 5 and 8 by MAP, as examples/fit_liu2022.py (priors: the
    README's population fit and named ones): the patients whose search once met NaN gradients and a NaN
    Hessian (with K_k 40; those failures have unit tests in test_likelihood.py and test_fitting.py)."""
    model = cartkin.load_model("il10")
    data = read_data(LIU / "Data_CR.csv", model, column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"},
                     dvid_map={1: "car_blood", 2: "leukaemia"}, covariates={"Reg": "L0"}, censor_floor=0.2)
    two = Dataset(tuple(data.subject(i) for i in ("5", "8")), data.observables)
    priors = {"rho": (1.33, 0.41), "kappa": (466.0, 1.82), "f_blood": (1.44e-4, 4.87), "delta_E": (0.3, 0.5),
              "k_mem": (0.015, 1.0), "k_exh": (0.5, 1.0)}
    result = fit(model, two, estimate=tuple(priors), priors=priors, fix={"armored": 0, "K_k": 1e5},
                 regimen=cartkin.Regimen.single(dose_per_kg=1e8), sigma={"sigma_car_blood": 1.2,
                                                                         "sigma_leukaemia": 2.0}, starts=2)
    for f in result.fits:
        assert f.converged, (f.id, f.message, f.warnings)
        values = dict(zip(f.names, f.estimates))
        assert 0.3 < values["rho"] <= 3.0 and 0.05 < values["delta_E"] < 1.0 and values["k_exh"] < 5.0
        assert np.all(np.isfinite(f.standard_errors[:3]))
        regimen = cartkin.Regimen.single(dose_per_kg=1e8)
        assert log10_rmse(model, two.subject(f.id), f.parameters, "car_blood", regimen) < 0.6
