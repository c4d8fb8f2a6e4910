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


def log10_rmse(model, subject, parameters, observable="nTA"):
    """RMSE of log10 observed − log10 predicted over the subject's measured (uncensored) CAR T values."""
    sel = (subject.observable_index == model.observables.index(observable)) & ~subject.censored
    res = cartkin.simulate(model, None, subject.times[sel], dict(zip(model.parameter_names, parameters)),
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
