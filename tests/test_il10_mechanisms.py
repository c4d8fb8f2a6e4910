"""Mechanisms of the il10 model: CD19-negative escape, IL-6 and CRS grade with kill burden, B-cell
aplasia while CAR T persist and recovery once they are gone."""
import numpy as np
import pytest

import cartkin
from cartkin import metrics

MODEL = cartkin.load_model("il10")
T = np.linspace(0, 365, 731)
LABEL = cartkin.Regimen.single(1e6)  # conventional product at a label-like dose, cells/kg


def run(regimen=LABEL, **params):
    params.setdefault("armored", 0)
    return cartkin.simulate(MODEL, regimen, T, params)


def test_cd19_negative_subclone_is_not_killed_and_relapses_cd19_negative():
    r = run(L0=1000, f_neg=1e-6)
    total, negative = r.observable("blast_pct"), r.observable("blast_cd19neg_pct")
    assert metrics.response(T, total)                      # CAR T clear the CD19+ blasts
    assert metrics.relapse_type(T, total, negative) == "cd19neg"
    day = metrics.relapse_day(T, total)
    assert 28 < day < 365
    # the CD19- cells grew as untreated leukaemia does (r_L), undisturbed by CAR T
    start = r.observable("leukaemia_cd19neg")[0]
    assert start == pytest.approx(1000 * 1e-6)
    assert r.observable("L")[0] == pytest.approx(1000 * (1 - 1e-6))
    assert r.observable("L_neg")[0] == pytest.approx(1e6 * 1000 * 1e-6)  # cells/L
    # without a CD19- clone the same patient stays in remission
    clean = run(L0=1000, f_neg=0.0)
    assert metrics.relapse_type(T, clean.observable("blast_pct"), clean.observable("blast_cd19neg_pct")) == ""


def test_blast_pct_counts_both_subclones():
    r = run(L0=1000, f_neg=0.5, kappa=0.0)
    L, L_neg = r.observable("L"), r.observable("leukaemia_cd19neg")
    np.testing.assert_allclose(L_neg, 1e-6 * r.observable("L_neg"), rtol=1e-15)  # the state is in cells/L
    np.testing.assert_allclose(r.observable("blast_pct"), 97.19 * (L + L_neg) / (L + L_neg + 1909), rtol=1e-12)
    np.testing.assert_allclose(r.observable("blast_cd19neg_pct"), 97.19 * L_neg / (L + L_neg + 1909), rtol=1e-12)


def test_higher_kill_burden_raises_peak_il6_and_crs_grade():
    # more leukaemia to kill at the same dose
    peaks = [run(L0=L0, f_neg=0.0).observable("il6").max() for L0 in (300, 1000, 5000)]
    assert peaks[0] < peaks[1] < peaks[2]
    grades = [metrics.crs_grade(T, run(L0=L0, f_neg=0.0).observable("il6")) for L0 in (300, 5000)]
    assert grades[0] < grades[1] and grades[1] >= 3
    # IL-6 on a clinical scale: hundreds or more pg/mL at high burden, tens when there is little to kill
    assert peaks[2] > 300 and peaks[0] < 100
    # a higher dose at the same burden kills faster: a higher peak (r_L = 0 keeps the burden the same; with
    # growth a low dose meets a larger leukaemia by the time it expands, which can outweigh the dose)
    low, high = (run(cartkin.Regimen.single(d), L0=3000, f_neg=0.0, r_L=0.0).observable("il6").max()
                 for d in (1e5, 3e6))
    assert high > 1.1 * low


def test_b_cell_aplasia_lasts_while_car_t_persist_and_b_cells_recover_after():
    B0 = MODEL.parameters["B0"]
    lasting = run(L0=1000, f_neg=0.0)
    b = lasting.observable("b_cells")
    assert metrics.aplasia_at(T, b, B0, day=120.0)               # memory CAR T keep B cells down
    assert lasting.observable("car_blood")[np.searchsorted(T, 120.0)] > 0
    # CAR T that are lost quickly (short-lived memory, little memory formation): B cells come back
    lost = run(L0=1000, f_neg=0.0, delta_M=0.2, k_mem=0.002)
    car, b = lost.observable("car_blood"), lost.observable("b_cells")
    gone = np.argmax((T > 0) & (car < 1e-3))
    assert 0 < gone and T[gone] < 120
    assert metrics.aplasia_at(T, b, B0, day=28.0)               # aplastic while CAR T are there
    assert b[-1] > 0.7 * B0                                    # recovered by one year
    assert not metrics.aplasia_at(T, b, B0, day=300.0)
    # recovery takes weeks to months, not days
    back = T[np.argmax((T > 28) & (b > 0.5 * B0))]
    assert back - T[gone] > 30


def test_label_dose_kinetics_are_in_the_label_ranges():
    r = run(L0=1000, f_neg=0.0)
    car = r.observable("car_blood")
    summary = metrics.exposure_summary(T, car, limit=0.1)
    assert 5 < summary["cmax"] < 60          # label: 32,700 copies/µg ≈ 16 cells/µL
    assert 6 < summary["tmax"] < 16          # label: 9.83 d
    window = T <= 84
    assert 10 < metrics.terminal_half_life(T[window], car[window], limit=0.1) < 60   # label: 21.7 d
    assert 90 < summary["tlast"] < 365       # label: 170 d


def test_autocrine_il10_acts_from_the_first_day_on_secreting_cells_only():
    """m_auto: an IL-10-secreting product feels its own IL-10 before plasma IL-10 rises (Zhao 2024); a
    conventional product (armored = 0) is untouched by m_auto, and m_auto = 0 is MODEL.md's model."""
    low = cartkin.Regimen.single(0.1e6)
    early = T[(T > 0) & (T <= 7)]
    plain, auto = run(low, armored=1, m_auto=0.0), run(low, armored=1, m_auto=0.5)
    il10 = plain.observable("il10")[np.searchsorted(T, early)]
    assert np.all(il10 < 0.2 * 50.0)  # plasma IL-10 far below EC50_I in the first week at a low dose
    car = lambda r: r.observable("car_blood")[np.searchsorted(T, early)]  # noqa: E731
    assert np.all(car(auto)[1:] > 1.05 * car(plain)[1:])  # faster expansion from the start
    conventional = [run(low, armored=0, m_auto=v).observable("car_blood") for v in (0.0, 0.5, 1.0)]
    np.testing.assert_array_equal(conventional[0], conventional[1])
    np.testing.assert_array_equal(conventional[0], conventional[2])
