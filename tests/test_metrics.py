"""Metrics against analytic curves, hand-built blast courses and a plain-loop reference."""
import numpy as np
import pytest

from cartkin import CartkinError, metrics

T = np.linspace(0, 100, 201)  # every 0.5 d


# --- Cmax / Tmax / Tlast ---------------------------------------------------------------------------

def test_cmax_and_first_tmax():
    t = np.array([0.0, 1, 2, 3, 4])
    y = np.array([1.0, 5, 3, 5, 2])
    assert metrics.cmax(t, y) == 5.0
    assert metrics.tmax(t, y) == 1.0  # the first of two equal peaks
    assert isinstance(metrics.cmax(t, y), float)


def test_tlast_is_the_last_time_strictly_above_the_limit():
    y = np.exp(-0.1 * T)
    assert metrics.tlast(T, y, 0.01) == pytest.approx(46.0)  # crossing at 46.05, last grid point 46.0
    assert np.isnan(metrics.tlast(T, y, 2.0))
    assert metrics.tlast([0.0, 1, 2], [3.0, 1.0, 1.0], 1.0) == 0.0  # equal to the limit is not above


# --- AUC ---------------------------------------------------------------------------------------------

def test_log_down_auc_of_exponential_decay_is_exact_with_few_samples():
    t = np.array([0.0, 1, 2, 4, 8, 16, 28])
    y = 3.0 * np.exp(-0.2 * t)
    exact = 3.0 * (1 - np.exp(-0.2 * 28)) / 0.2
    assert metrics.auc(t, y, 0, 28) == pytest.approx(exact, rel=1e-12)
    # a plain linear trapezoid is far off on this grid, so the test can tell the two apart
    linear = np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(t))
    assert abs(linear - exact) / exact > 0.05


def test_auc_window_ends_between_samples_are_log_interpolated_on_a_decline():
    t = np.array([0.0, 2, 8, 20])
    y = np.exp(-0.3 * t)
    exact = (np.exp(-0.3 * 3) - np.exp(-0.3 * 11)) / 0.3
    assert metrics.auc(t, y, 3, 11) == pytest.approx(exact, rel=1e-12)


def test_linear_up_auc_of_a_rise_is_exact_and_interpolates_the_ends():
    t = np.array([0.0, 10.0, 20.0])
    assert metrics.auc(t, 2 * t) == pytest.approx(400.0, rel=1e-14)  # default window: whole time course
    assert metrics.auc(t, 2 * t, 5, 15) == pytest.approx(200.0, rel=1e-14)
    assert metrics.auc(t, 2 * t, 7, 7) == 0.0


def test_rise_then_exponential_fall_uses_each_rule_on_its_segment():
    t = np.array([0.0, 5, 10, 20, 40])
    y = np.where(t <= 10, 10 * t, 100 * np.exp(-0.1 * (t - 10)))
    exact = 0.5 * 10 * 100 + 100 * (1 - np.exp(-3.0)) / 0.1
    assert metrics.auc(t, y, 0, 40) == pytest.approx(exact, rel=1e-12)


def test_nearly_flat_decline_matches_the_linear_trapezoid():
    t = np.array([0.0, 1.0])
    y = np.array([3.0, 3.0 * (1.0 - 1e-13)])  # log(b) - log(a) alone would lose ~3 digits here
    assert metrics.auc(t, y) == pytest.approx(3.0 * (1.0 - 0.5e-13), rel=1e-14)


def test_auc_at_a_jump_uses_the_value_before_it_as_end_and_after_it_as_start():
    t = np.array([0.0, 1, 1, 2])  # a repeated time: a jump, e.g. a second infusion
    y = np.array([0.0, 1, 5, 5])
    assert metrics.auc(t, y, 0, 1) == pytest.approx(0.5)
    assert metrics.auc(t, y, 1, 2) == pytest.approx(5.0)
    assert metrics.auc(t, y) == pytest.approx(5.5)


# --- terminal half-life ----------------------------------------------------------------------------

def test_half_life_of_a_mono_exponential_is_exact():
    y = 50 * np.exp(-0.1 * T)
    assert metrics.terminal_half_life(T, y) == pytest.approx(np.log(2) / 0.1, rel=1e-12)
    assert metrics.terminal_half_life(T, y, n_points=3) == pytest.approx(np.log(2) / 0.1, rel=1e-10)
    assert metrics.terminal_half_life(T, y, limit=0.01) == pytest.approx(np.log(2) / 0.1, rel=1e-12)


def test_half_life_ignores_the_rise_before_tmax():
    y = np.where(T < 10, np.exp(0.5 * T), np.exp(5 - 0.05 * (T - 10)))
    assert metrics.terminal_half_life(T, y) == pytest.approx(np.log(2) / 0.05, rel=1e-12)


def test_half_life_picks_the_slow_terminal_phase_of_a_biexponential():
    y = 0.99 * np.exp(-0.3 * T) + 0.01 * np.exp(-0.01 * T)
    # the best-fit rule tolerates a little curvature, hence 1% rather than exact; the fast phase is 30x off
    assert metrics.terminal_half_life(T, y) == pytest.approx(np.log(2) / 0.01, rel=0.01)
    assert metrics.terminal_half_life(T, y) == pytest.approx(_reference_half_life(T, y), rel=1e-9)
    # with only the early samples, the same curve is dominated by the fast phase
    assert metrics.terminal_half_life(T[:11], y[:11]) < 3.0


def test_half_life_best_fit_drops_an_outlying_early_point():
    t = np.arange(0.0, 8.0)
    y = np.exp(-0.2 * t)
    y[1] *= 3.0  # makes t = 1 the peak; t = 2 is then off the line through the rest
    y[2] *= 0.5
    assert metrics.terminal_half_life(t, y) == pytest.approx(np.log(2) / 0.2, rel=1e-12)


def _reference_half_life(t, y, limit=0.0, tolerance=1e-4):
    """WinNonlin best fit with a plain loop and np.polyfit."""
    k = int(np.argmax(y))
    keep = (np.arange(t.size) > k) & (y > max(limit, 0.0))
    tt, yy = t[keep], np.log(y[keep])
    fits = []
    for n in range(3, tt.size + 1):
        x, z = tt[-n:], yy[-n:]
        slope, intercept = np.polyfit(x, z, 1)
        resid = z - (slope * x + intercept)
        r2 = 1 - resid @ resid / np.sum((z - z.mean()) ** 2)
        if slope < 0:
            fits.append((n, slope, 1 - (1 - r2) * (n - 1) / (n - 2)))
    if not fits:
        return np.nan
    best = max(f[2] for f in fits)
    n, slope, _ = max((f for f in fits if f[2] >= best - tolerance), key=lambda f: f[0])
    return np.log(2) / -slope


def test_half_life_matches_a_plain_loop_reference_on_noisy_curves():
    rng = np.random.default_rng(7)
    t = np.arange(0.0, 40.0, 2.0)
    clean = 100 * (0.8 * np.exp(-0.4 * t) + 0.2 * np.exp(-0.05 * t))
    noise = rng.uniform(0.001, 0.05, (40, 1))  # quiet rows make the 1e-4 tolerance decide
    Y = clean * np.exp(noise * rng.normal(0, 1, (40, t.size)))
    got = metrics.terminal_half_life(t, Y, limit=1.0)
    want = np.array([_reference_half_life(t, y, 1.0) for y in Y])
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert np.all(np.isfinite(got))
    strict_best = np.array([_reference_half_life(t, y, 1.0, tolerance=0.0) for y in Y])
    assert np.sum(~np.isclose(got, strict_best, rtol=1e-9)) >= 5  # "prefer more points" was exercised


def test_half_life_is_nan_without_a_declining_terminal_phase():
    t = np.arange(0.0, 10.0)
    assert np.isnan(metrics.terminal_half_life(t, np.exp(0.1 * t)))  # peak at the end
    assert np.isnan(metrics.terminal_half_life(t, np.r_[1, 2, 5, np.full(7, 3.0)]))  # flat tail
    assert np.isnan(metrics.terminal_half_life(t, np.exp(-np.abs(t - 7))))  # two points after Tmax
    assert np.isnan(metrics.terminal_half_life(t, np.exp(-t), limit=np.exp(-2.5)))  # limit leaves 2


# --- duration below a threshold (B-cell aplasia) --------------------------------------------------

def test_duration_below_locates_crossings_between_samples():
    t = np.array([0.0, 10, 20])
    assert metrics.duration_below(t, [10.0, 0.0, 10.0], 5.0) == pytest.approx(10.0)  # 5 to 15
    assert metrics.duration_below(t, [10.0, 0.0, 20.0], 5.0) == pytest.approx(7.5)  # 5 to 12.5
    assert metrics.duration_below(t, [0.0, 10.0, 10.0], 5.0) == pytest.approx(5.0)  # starts below
    assert metrics.duration_below(t, [10.0, 10.0, 2.0], 5.0) == pytest.approx(10 * 3 / 8)  # ends below
    assert metrics.duration_below(t, [5.0, 5.0, 5.0], 5.0) == 0.0  # equal is not below


def test_duration_below_with_a_threshold_per_subject():
    y = np.exp(-0.1 * T)
    below = metrics.duration_below(T, np.vstack([y, y]), [0.5, 0.1])
    np.testing.assert_allclose(below, [100 - np.log(2) / 0.1, 100 - np.log(10) / 0.1], rtol=1e-3)
    b_cells = 200 - 190 * np.exp(-((T - 40) / 15) ** 2)  # dips below 10% of B0 = 20 around day 40
    assert 0 < metrics.duration_below(T, b_cells, 0.1 * 200) < 30


# --- response and relapse --------------------------------------------------------------------------

def test_response_interpolates_the_blast_percentage_on_the_day():
    t = np.array([0.0, 20, 40])
    assert metrics.response(t, [60.0, 6.0, 2.0]) is True  # 4.4% on day 28
    assert metrics.response(t, [60.0, 8.0, 2.0]) is False  # 5.6% on day 28
    assert metrics.response(t, [60.0, 6.0, 2.0], day=20) is False
    assert metrics.mrd_negative(t, [60.0, 0.015, 0.0]) is True  # 0.009% on day 28
    assert metrics.mrd_negative(t, [60.0, 0.02, 0.0]) is False  # 0.012% on day 28
    assert metrics.mrd_negative(t, [60.0, 6.0, 2.0]) is False


def test_relapse_day_is_the_interpolated_crossing_after_response():
    t = np.array([0.0, 14, 28, 56, 84, 112])
    blasts = np.array([
        [60, 10, 1, 1, 3, 7],  # responds, relapses between day 84 (3%) and 112 (7%): day 98
        [60, 50, 40, 30, 20, 10],  # never responds
        [60, 10, 1, 0.5, 0.2, 0.1],  # responds, never relapses
        [60, 1, 6, 1, 1, 1],  # was below 5% before day 28 but not on day 28: not a responder
    ], dtype=float)
    np.testing.assert_array_equal(metrics.response(t, blasts), [1.0, 0.0, 1.0, 0.0])
    day = metrics.relapse_day(t, blasts)
    assert day[0] == pytest.approx(98.0)
    assert np.isnan(day[1:]).all()
    np.testing.assert_array_equal(metrics.relapse_free(t, blasts, 90), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(metrics.relapse_free(t, blasts, 100), [0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(metrics.relapse_free(t, blasts, 98), [0.0, 0.0, 1.0, 0.0])


def test_relapse_crossing_starts_from_the_interpolated_response_day_value():
    t = np.array([0.0, 20, 30, 40])
    assert metrics.relapse_day(t, [60.0, 6.0, 2.0, 10.0]) == pytest.approx(30 + 3 / 8 * 10)
    t = np.array([0.0, 20, 40])  # no sample between day 28 (4%) and the first one above 5% (day 40)
    assert metrics.relapse_day(t, [60.0, 0.0, 10.0]) == pytest.approx(30.0)
    assert metrics.relapse_free(t, [60.0, 0.0, 10.0], 29) is True
    assert metrics.relapse_free(t, [60.0, 0.0, 10.0], 31) is False


def test_relapse_with_a_custom_response_day_and_threshold():
    t = np.arange(0.0, 61.0)
    blasts = np.where(t < 30, 40 - t, 10 + (t - 30))  # 20% at day 20, minimum 10% at day 30
    assert metrics.relapse_day(t, blasts, threshold=15, response_day=28) == pytest.approx(35.0)
    assert np.isnan(metrics.relapse_day(t, blasts, threshold=15, response_day=20))  # 20%: no response
    assert np.isnan(metrics.relapse_day(t, blasts, threshold=50, response_day=60))  # no time left


# --- vectorisation, failed subjects, summary -------------------------------------------------------

def _all_metrics():
    return {
        "cmax": metrics.cmax,
        "tmax": metrics.tmax,
        "auc_0_28": lambda t, y: metrics.auc(t, y, 0, 28),
        "auc_3_47": lambda t, y: metrics.auc(t, y, 3.3, 47.9),
        "half_life": metrics.terminal_half_life,
        "half_life_limit": lambda t, y: metrics.terminal_half_life(t, y, limit=0.5),
        "tlast": lambda t, y: metrics.tlast(t, y, 0.5),
        "below": lambda t, y: metrics.duration_below(t, y, 2.0),
        "response": lambda t, y: metrics.response(t, y, threshold=3.0),
        "relapse_day": lambda t, y: metrics.relapse_day(t, y, threshold=3.0),
        "relapse_free": lambda t, y: metrics.relapse_free(t, y, 80, threshold=3.0),
    }


def _curves(n=6):
    rng = np.random.default_rng(0)
    rise = rng.uniform(0.2, 0.8, (n, 1))
    fall = rng.uniform(0.02, 0.3, (n, 1))
    regrow = rng.uniform(0.0, 0.08, (n, 1))
    peak = rng.uniform(5, 15, (n, 1))
    y = 10 * np.where(T < peak, np.exp(rise * (T - peak)), np.exp(-fall * (T - peak)))
    return y + 0.05 * np.exp(regrow * T)


def test_vectorised_equals_per_row_and_failed_rows_give_nan():
    Y = _curves()
    Y[2, 40] = np.nan
    Y[4, 3] = np.inf
    for name, fn in _all_metrics().items():
        together = np.asarray(fn(T, Y))
        assert together.shape == (Y.shape[0],), name
        assert np.isnan(together[[2, 4]]).all(), name
        for i in (0, 1, 3, 5):
            alone = fn(T, Y[i])
            assert np.isscalar(alone), name
            np.testing.assert_allclose(together[i], alone, rtol=1e-13, err_msg=name)
        single_failed = fn(T, Y[2])
        assert isinstance(single_failed, float) and np.isnan(single_failed), name


def test_the_curves_exercise_both_outcomes_of_the_yes_no_metrics():
    Y = _curves()
    assert set(metrics.response(T, Y, threshold=3.0)) == {0.0, 1.0}
    assert np.isfinite(metrics.relapse_day(T, Y, threshold=3.0)).any()


def test_no_subjects_gives_empty_results():
    empty = np.empty((0, T.size))
    for name, fn in _all_metrics().items():
        assert np.asarray(fn(T, empty)).shape == (0,), name


def test_exposure_summary_agrees_with_the_single_metrics():
    Y = _curves()
    Y[1, 7] = np.nan
    s = metrics.exposure_summary(T, Y, limit=0.5)
    assert set(s) == {"cmax", "tmax", "auc_0_28", "auc_0_84", "half_life", "tlast"}
    np.testing.assert_array_equal(s["auc_0_84"], metrics.auc(T, Y, 0, 84))
    np.testing.assert_array_equal(s["half_life"], metrics.terminal_half_life(T, Y, limit=0.5))
    np.testing.assert_array_equal(s["tlast"], metrics.tlast(T, Y, 0.5))
    assert all(np.isnan(v[1]) for v in s.values())
    short = metrics.exposure_summary(T[:121], Y[0, :121], limit=0.5)  # horizon 60 d: no AUC0–84
    assert np.isnan(short["auc_0_84"]) and short["auc_0_28"] == pytest.approx(metrics.auc(T, Y[0], 0, 28))
    assert all(isinstance(v, float) for v in short.values())


# --- bad input -------------------------------------------------------------------------------------

ONES = np.ones(T.size)


@pytest.mark.parametrize("call, message", [
    (lambda: metrics.auc(T, ONES, 0, 200), "within the simulated times"),
    (lambda: metrics.auc(T[10:], ONES[10:], 0, 50), "within the simulated times"),
    (lambda: metrics.auc(T, ONES, 50, 20), "before its start"),
    (lambda: metrics.cmax(T[::-1], ONES), "sorted"),
    (lambda: metrics.cmax(np.vstack([T, T]), ONES), "1-D"),
    (lambda: metrics.cmax(np.r_[T[:-1], np.nan], ONES), "NaN or infinite"),
    (lambda: metrics.cmax(T, np.ones(5)), "columns"),
    (lambda: metrics.cmax(T, np.ones((2, 2, T.size))), "1-D .one subject. or 2-D"),
    (lambda: metrics.cmax(T, ["a"] * T.size), "numbers"),
    (lambda: metrics.response(T, ONES, day=400), "outside the simulated times"),
    (lambda: metrics.relapse_day(T, ONES, response_day=-1), "outside the simulated times"),
    (lambda: metrics.relapse_free(T, ONES, 200), "outside the simulated times"),
    (lambda: metrics.relapse_free(T, ONES, 10), "before the response day"),
    (lambda: metrics.terminal_half_life(T, ONES, n_points=2), "at least 3"),
    (lambda: metrics.terminal_half_life(T, ONES, n_points=3.5), "whole number"),
    (lambda: metrics.tlast(T, ONES, np.nan), "finite"),
    (lambda: metrics.duration_below(T, np.ones((3, T.size)), [1.0, 2.0]), "one value per subject"),
])
def test_bad_input_is_named_in_one_line(call, message):
    with pytest.raises(CartkinError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


# --- CRS grade, relapse type, B-cell aplasia on a day -----------------------------------------------

def test_crs_grade_counts_the_thresholds_the_il6_peak_reaches():
    t = np.array([0.0, 2, 4, 6])
    rows = np.array([[3.0, 5, 4, 3],          # below every threshold: no CRS
                     [3.0, 200, 50, 3],       # exactly the grade-1 threshold counts
                     [3.0, 400, 600, 10],     # peak 600: grade 3
                     [3.0, 5000, 100, 3],     # grade 4
                     [3.0, np.nan, 4, 3]])    # failed subject
    grades = metrics.crs_grade(t, rows)
    np.testing.assert_array_equal(grades[:4], [0, 1, 3, 4])
    assert np.isnan(grades[4])
    assert metrics.crs_grade(t, rows[2]) == 3.0 and isinstance(metrics.crs_grade(t, rows[2]), float)
    assert metrics.crs_grade(t, rows[2], thresholds=(1, 2, 3, 700)) == 3.0
    # monotone in the peak
    peaks = np.linspace(0, 3000, 61)
    g = metrics.crs_grade(t, np.column_stack([np.zeros(61), peaks, np.zeros(61), np.zeros(61)]))
    assert np.all(np.diff(g) >= 0) and g[0] == 0 and g[-1] == 4


@pytest.mark.parametrize("thresholds", [(1, 2, 3), (4, 3, 2, 1), (1, 2, np.nan, 4), "abc"])
def test_crs_grade_rejects_bad_thresholds(thresholds):
    with pytest.raises(CartkinError, match="thresholds"):
        metrics.crs_grade([0.0, 1], [1.0, 2], thresholds=thresholds)


def test_relapse_type_from_the_majority_at_the_relapse_day():
    t = np.array([0.0, 28, 60, 90, 120])
    total = np.array([[60.0, 1, 2, 10, 30],      # relapse between day 60 and 90
                      [60.0, 1, 2, 10, 30],
                      [60.0, 1, 1, 2, 3],        # no relapse
                      [60.0, 20, 30, 40, 50],    # no response
                      [60.0, 1, 2, np.nan, 30]])  # failed
    negative = np.array([[0.0, 0.5, 1.5, 8, 25],   # CD19- blasts are the majority at relapse
                         [0.0, 0.0, 0.5, 2, 5],    # CD19+ relapse
                         [0.0, 0.9, 0.9, 1.9, 2.9],
                         [0.0, 19, 29, 39, 49],
                         [0.0, 1, 2, 3, 4]])
    kinds = metrics.relapse_type(t, total, negative)
    assert list(kinds) == ["cd19neg", "cd19pos", "", "", ""]
    assert metrics.relapse_type(t, total[0], negative[0]) == "cd19neg"
    assert metrics.relapse_type(t, total[0], negative[0], threshold=40.0) == ""  # never 40% after response
    with pytest.raises(CartkinError, match="shape"):
        metrics.relapse_type(t, total, negative[:2])


def test_aplasia_at_a_day_uses_each_patients_baseline():
    t = np.array([0.0, 100, 200])
    b = np.array([[200.0, 1, 10],
                  [200.0, 1, 30],
                  [100.0, 1, 25],
                  [100.0, np.nan, 1]])
    out = metrics.aplasia_at(t, b, baseline=[200.0, 200, 100, 100], day=150.0)  # values 5.5, 15.5, 13, nan
    np.testing.assert_array_equal(out[:3], [1.0, 1.0, 0.0])
    assert np.isnan(out[3])
    assert metrics.aplasia_at(t, b[1], 200.0, day=200.0) is False
    assert metrics.aplasia_at(t, b[1], 200.0, day=200.0, fraction=0.2) is True
    with pytest.raises(CartkinError, match="outside"):
        metrics.aplasia_at(t, b, 200.0, day=400.0)
