"""Metrics against analytic curves."""
import numpy as np
import pytest

from cartkin import CartkinError, metrics

T = np.linspace(0, 100, 201)


def test_half_life_of_a_mono_exponential_is_exact():
    assert metrics.terminal_half_life(T, np.exp(-0.1 * T)) == pytest.approx(np.log(2) / 0.1, rel=1e-10)


def test_half_life_picks_the_slow_terminal_phase():
    y = np.where(T < 10, np.exp(0.5 * T), np.exp(5) * (0.99 * np.exp(-0.3 * (T - 10)) + 0.01 * np.exp(-0.01 * (T - 10))))
    assert metrics.terminal_half_life(T, y) == pytest.approx(np.log(2) / 0.01, rel=0.02)


def test_log_down_auc_of_exponential_decay_is_exact_with_few_samples():
    t = np.array([0.0, 1, 2, 4, 8, 16, 28])
    assert metrics.auc(t, np.exp(-0.2 * t), 0, 28) == pytest.approx((1 - np.exp(-5.6)) / 0.2, rel=1e-12)


def test_linear_up_auc_of_a_rise_is_exact_and_interpolates_the_ends():
    t = np.array([0.0, 10.0, 20.0])
    assert metrics.auc(t, 2 * t, 0, 20) == pytest.approx(400.0)
    assert metrics.auc(t, 2 * t, 5, 15) == pytest.approx(200.0)


def test_vectorised_equals_per_row_and_nan_rows_stay_nan():
    rng = np.random.default_rng(0)
    Y = np.exp(-np.outer(rng.uniform(0.01, 0.3, 5), T)) * rng.uniform(1, 10, (5, 1))
    Y[2, 40] = np.nan
    for fn in (metrics.cmax, metrics.tmax, lambda t, y: metrics.auc(t, y, 0, 28),
               metrics.terminal_half_life, lambda t, y: metrics.tlast(t, y, 0.5)):
        together = fn(T, Y)
        assert np.isnan(together[2])
        for i in (0, 1, 3, 4):
            assert together[i] == pytest.approx(fn(T, Y[i]))


def test_tlast_and_duration_below():
    y = np.exp(-0.1 * T)
    assert metrics.tlast(T, y, 0.01) == pytest.approx(46.0)  # last grid point above 0.01 (crossing at 46.05)
    assert np.isnan(metrics.tlast(T, y, 2.0))
    below = metrics.duration_below(T, np.vstack([y, y]), [0.5, 0.1])
    np.testing.assert_allclose(below, [100 - np.log(2) / 0.1, 100 - np.log(10) / 0.1], rtol=1e-3)


def test_response_relapse_and_relapse_free():
    blasts = np.where(T < 20, 50 - 2.4 * T, np.where(T < 60, 2.0, 2.0 + (T - 60)))
    never = np.full_like(T, 30.0)
    both = np.vstack([blasts, never])
    np.testing.assert_array_equal(metrics.response(T, both), [1.0, 0.0])
    day = metrics.relapse_day(T, both)
    assert day[0] == pytest.approx(63.0) and np.isnan(day[1])
    np.testing.assert_array_equal(metrics.relapse_free(T, both, 60), [1.0, 0.0])
    np.testing.assert_array_equal(metrics.relapse_free(T, both, 90), [0.0, 0.0])
    assert metrics.mrd_negative(T, blasts) == 0.0


@pytest.mark.parametrize("call, message", [
    (lambda: metrics.auc(T, np.ones(T.size), 0, 200), "within the simulated times"),
    (lambda: metrics.cmax(T[::-1], np.ones(T.size)), "sorted"),
    (lambda: metrics.cmax(T, np.ones(5)), "columns"),
    (lambda: metrics.response(T, np.ones(T.size), day=400), "outside the simulated times"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(CartkinError, match=message):
        call()
