"""Residual error models and the censored (M3) likelihood: values against scipy.stats, gradients
against finite differences, the far tails, failure rules and weighted residuals."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

from cartkin import CartkinError
from cartkin.stats.likelihood import (KINDS, NegLogLik, ResidualError, n_sigmas, negative_log_likelihood,
                                        residuals, sigma_names)

ERRORS = [ResidualError("proportional", sigma=0.4), ResidualError("additive", sigma=0.7),
          ResidualError("combined", sigma=0.2, sigma_additive=0.5)]


def problem(seed=0, n=8):
    rng = np.random.default_rng(seed)
    f = rng.uniform(1, 10, n)
    y = f * np.exp(rng.normal(0, 0.3, n))
    cens = np.zeros(n, bool)
    cens[[2, 5]] = True
    lim = np.where(cens, 3.0, np.nan)
    return f, y, cens, lim


def nll(f, y, c, lim, error):
    return negative_log_likelihood(f, y, c, lim, error).value


# --- values --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.kind)
def test_uncensored_terms_are_minus_the_log_density_of_y(error):
    f, y, _, _ = problem()
    none = np.zeros(f.size, bool)
    lim = np.full(f.size, np.nan)
    if error.kind == "proportional":
        expected = -stats.lognorm.logpdf(y, s=error.sigma, scale=f)
    elif error.kind == "additive":
        expected = -stats.norm.logpdf(y, f, error.sigma)
    else:
        expected = -stats.norm.logpdf(y, f, np.sqrt(error.sigma_additive ** 2 + (error.sigma * f) ** 2))
    result = negative_log_likelihood(f, y, none, lim, error)
    assert isinstance(result, NegLogLik)
    assert result.value == pytest.approx(expected.sum(), rel=1e-12)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.kind)
def test_m3_term_is_minus_the_log_normal_cdf_at_the_limit(error):
    f = np.array([0.5, 2.0, 7.0])
    limit = 1.5
    cens = np.ones(3, bool)
    lim = np.full(3, limit)
    if error.kind == "proportional":
        u = (np.log(limit) - np.log(f)) / error.sigma
    else:
        u = (limit - f) / error.sd(f)
    value = negative_log_likelihood(f, np.full(3, limit), cens, lim, error).value
    assert value == pytest.approx(-stats.norm.logcdf(u).sum(), rel=1e-12)
    # one point at a time: −log P(y < limit) under the error model's own distribution
    for i in range(3):
        one = negative_log_likelihood(f[i:i + 1], [limit], [True], [limit], error).value
        if error.kind == "proportional":
            p = stats.lognorm.cdf(limit, s=error.sigma, scale=f[i])
        else:
            p = stats.norm.cdf(limit, f[i], error.sd(f[i]))
        assert one == pytest.approx(-math.log(p), rel=1e-10)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.kind)
def test_censored_and_uncensored_parts_make_a_probability_distribution(error):
    """P(y < L) + ∫_L^∞ p(y) dy = 1: the M3 term and the density are on the same footing."""
    f, limit = 4.0, 2.5
    below = math.exp(-negative_log_likelihood([f], [limit], [True], [limit], error).value)
    density = lambda y: math.exp(-negative_log_likelihood([f], [y], [False], [np.nan], error).value)  # noqa: E731
    above, _ = integrate.quad(density, limit, np.inf)
    assert below + above == pytest.approx(1.0, abs=1e-7)


def test_censored_likelihood_vanishes_when_the_prediction_is_far_below_the_limit():
    error = ResidualError("proportional", sigma=0.5)
    for pred in (1e-3, 1e-6, 1e-12):
        value, d_pred, d_sigma = negative_log_likelihood([pred], [1.0], [True], [1.0], error)
        assert 0.0 <= value < 1e-6
        assert np.all(np.isfinite(d_pred)) and np.all(np.isfinite(d_sigma))
    value = negative_log_likelihood([1e-12], [1.0], [True], [1.0], error).value
    assert value == pytest.approx(-stats.norm.logcdf(np.log(1e12) / 0.5), abs=1e-300) and value < 1e-100
    additive = ResidualError("additive", sigma=1.0)
    assert negative_log_likelihood([-100.0], [0.0], [True], [0.0], additive).value < 1e-300


def test_far_above_the_limit_the_m3_term_stays_finite_and_accurate():
    """log_ndtr keeps −log Φ(u) accurate where Φ(u) underflows; compare with the asymptotic series
    Φ(u) = φ(u)/(−u) · (1 − 1/u² + 3/u⁴ − 15/u⁶ + …) for u → −∞."""
    error = ResidualError("additive", sigma=1.0)
    for u in (-40.0, -1e3, -1e7, -1e100):
        w = 1 / u
        series = 1 - w ** 2 + 3 * w ** 4 - 15 * w ** 6
        value, d_pred, _ = negative_log_likelihood([-u], [0.0], [True], [0.0], error)
        expected = 0.5 * u * u + math.log(-u) + 0.5 * math.log(2 * math.pi) - math.log(series)
        assert math.isfinite(value) and value == pytest.approx(expected, rel=1e-12)
        # d/df of −log Φ((L − f)/σ) is the Mills ratio φ(u)/Φ(u) / σ
        assert d_pred[0] == pytest.approx(-u / series, rel=1e-9)


def test_vectorised_total_is_the_sum_of_single_terms():
    f, y, c, lim = problem(3, 12)
    for error in ERRORS:
        total = nll(f, y, c, lim, error)
        single = sum(nll(f[i:i + 1], y[i:i + 1], c[i:i + 1], lim[i:i + 1], error) for i in range(f.size))
        assert total == pytest.approx(single, rel=1e-12)


# --- gradients ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.kind)
def test_gradients_match_central_finite_differences(error):
    f, y, c, lim = problem(1)
    result = negative_log_likelihood(f, y, c, lim, error)
    for i in range(f.size):
        h = 1e-6 * f[i]
        e = np.zeros(f.size)
        e[i] = h
        fd = (nll(f + e, y, c, lim, error) - nll(f - e, y, c, lim, error)) / (2 * h)
        assert result.d_pred[i] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert result.d_sigma.shape == (len(error.names),)
    for j, name in enumerate(error.names):
        s = getattr(error, name)
        h = 1e-6 * s
        up = ResidualError(error.kind, **{n: getattr(error, n) + (h if n == name else 0) for n in error.names})
        down = ResidualError(error.kind, **{n: getattr(error, n) - (h if n == name else 0) for n in error.names})
        fd = (nll(f, y, c, lim, up) - nll(f, y, c, lim, down)) / (2 * h)
        assert result.d_sigma[j] == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.kind)
def test_gradients_in_the_tails_match_finite_differences(error):
    # censored points far above and far below the limit, uncensored points far from the prediction
    f = np.array([0.05, 60.0, 2.0, 2.0])
    y = np.array([3.0, 3.0, 40.0, 0.1])
    c = np.array([True, True, False, False])
    lim = np.array([3.0, 3.0, np.nan, np.nan])
    result = negative_log_likelihood(f, y, c, lim, error)
    for i in range(f.size):  # one point at a time, so that tiny terms are not lost next to large ones
        h = 1e-6 * f[i]
        one = lambda x: nll([x], y[i:i + 1], c[i:i + 1], lim[i:i + 1], error)  # noqa: E731
        fd = (one(f[i] + h) - one(f[i] - h)) / (2 * h)
        assert result.d_pred[i] == pytest.approx(fd, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.kind)
def test_log_sigma_form_agrees_with_the_residual_error_form(error):
    f, y, c, lim = problem(2)
    value, d_pred, d_sigma = negative_log_likelihood(f, y, c, lim, error)
    v2, dp2, dls = negative_log_likelihood(error.kind, f, y, c, lim, error.log_values)
    assert v2 == value
    np.testing.assert_array_equal(dp2, d_pred)
    np.testing.assert_allclose(dls, d_sigma * error.values, rtol=1e-14)  # d/d log σ = σ d/dσ
    h = 1e-6
    for j in range(n_sigmas(error.kind)):
        e = np.zeros(n_sigmas(error.kind))
        e[j] = h
        fd = (negative_log_likelihood(error.kind, f, y, c, lim, error.log_values + e)[0]
              - negative_log_likelihood(error.kind, f, y, c, lim, error.log_values - e)[0]) / (2 * h)
        assert dls[j] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    np.testing.assert_array_equal(residuals(f, y, c, lim, error), residuals(error.kind, f, y, c, error.log_values))


# --- failure rules ------------------------------------------------------------------------------------------

def test_bad_predictions_give_inf_not_nan():
    f, y, c, lim = problem()
    for bad in (0.0, -1.0, np.nan, np.inf):
        g = f.copy()
        g[3] = bad
        value, d_pred, d_sigma = negative_log_likelihood(g, y, c, lim, ERRORS[0])
        assert value == math.inf
        assert np.all(d_pred == 0) and np.all(d_sigma == 0)
    # a censored point (index 2) predicted at or below zero is below its limit for sure: its term is the
    # f -> 0+ limit of the M3 term, 0, and the others are unchanged
    g = f.copy()
    g[2] = 1e-200
    near_zero = negative_log_likelihood(g, y, c, lim, ERRORS[0])
    for bad in (0.0, -1e-12):
        g[2] = bad
        value, d_pred, d_sigma = negative_log_likelihood(g, y, c, lim, ERRORS[0])
        assert value == pytest.approx(near_zero.value, rel=1e-12)
        assert d_pred[2] == 0 and np.allclose(d_pred, near_zero.d_pred) and np.allclose(d_sigma, near_zero.d_sigma)
    # on the natural scale a prediction <= 0 is legitimate; only non-finite ones fail
    for error in ERRORS[1:]:
        g = f.copy()
        g[3] = -1.0
        assert math.isfinite(nll(g, y, c, lim, error))
        g[3] = np.nan
        assert nll(g, y, c, lim, error) == math.inf


@pytest.mark.parametrize("args, message", [
    (([1.0], [0.0], [False], [np.nan]), "needs observations > 0; observation 0 is 0"),
    (([1.0, 2.0], [1.0, -2.0], [False, False], [np.nan, np.nan]), "observation 1 is -2"),
    (([1.0], [1.0], [True], [0.0]), "needs censoring limits > 0"),
    (([1.0], [1.0], [True], [np.nan]), "censored observation 0 has no finite limit"),
    (([1.0], [np.nan], [False], [np.nan]), "observation 0 is not a finite number"),
    (([1.0, 2.0], [1.0, 2.0, 3.0], [False] * 3, [np.nan] * 3), r"obs has shape \(3,\), predictions have shape \(2,\)"),
    (([1.0], [1.0], [2], [np.nan]), "censored must hold booleans"),
])
def test_bad_data_raise_a_clear_error(args, message):
    with pytest.raises(CartkinError, match=message):
        negative_log_likelihood(*args, ResidualError("proportional", sigma=1.0))


def test_additive_error_accepts_non_positive_observations():
    error = ResidualError("additive", sigma=1.0)
    assert nll([0.5], [-0.5], [False], [np.nan], error) == pytest.approx(-stats.norm.logpdf(-0.5, 0.5, 1.0))


def test_call_forms_are_checked():
    with pytest.raises(CartkinError, match="error must be a ResidualError"):
        negative_log_likelihood([1.0], [1.0], [False], [np.nan], 0.5)
    with pytest.raises(CartkinError, match="unknown residual error model 'lognormal'"):
        negative_log_likelihood("lognormal", [1.0], [1.0], [False], [np.nan], [0.0])
    with pytest.raises(CartkinError, match="combined residual error needs 2 log sigma"):
        negative_log_likelihood("combined", [1.0], [1.0], [False], [np.nan], [0.0])
    with pytest.raises(CartkinError, match="missing argument"):
        negative_log_likelihood([1.0], [1.0], [False], [np.nan])
    kw = negative_log_likelihood(pred=[2.0], obs=[1.0], censored=[False], limits=[np.nan], error=ERRORS[0])
    assert kw.value == nll([2.0], [1.0], [False], [np.nan], ERRORS[0])


# --- the error model object ---------------------------------------------------------------------------

def test_residual_error_parameters():
    assert KINDS == ("proportional", "additive", "combined")
    assert sigma_names("combined") == ("sigma_additive", "sigma") and n_sigmas("proportional") == 1
    combined = ERRORS[2]
    assert combined.names == ("sigma_additive", "sigma")
    np.testing.assert_array_equal(combined.values, [0.5, 0.2])
    assert ResidualError.from_values("combined", combined.values) == combined
    assert ResidualError.from_log_values("combined", combined.log_values) == combined
    assert ResidualError("additive", sigma_additive=2.0) == ResidualError("additive", sigma=2.0)
    np.testing.assert_allclose(combined.sd([0.0, 10.0]), [0.5, math.sqrt(0.25 + 4.0)])
    assert "proportional (sigma=0.4)" == ERRORS[0].describe()


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="log"), "unknown residual error model 'log'"),
    (dict(kind="proportional"), "proportional residual error needs sigma"),
    (dict(kind="proportional", sigma=-0.1), "sigma must be a finite number > 0"),
    (dict(kind="proportional", sigma=float("nan")), "sigma must be a finite number > 0"),
    (dict(kind="proportional", sigma=0.3, sigma_additive=1.0), "takes only sigma"),
    (dict(kind="combined", sigma=0.3), "combined residual error needs sigma_additive"),
    (dict(kind="additive", sigma=1.0, sigma_additive=1.0), "takes only sigma"),
])
def test_residual_error_validation(kwargs, message):
    with pytest.raises(CartkinError, match=message):
        ResidualError(**kwargs)
    with pytest.raises(CartkinError, match="has 2 sigma"):
        ResidualError.from_values("combined", [1.0])


def test_sampling_matches_the_error_model():
    f = np.full(20000, 5.0)
    y = ERRORS[0].sample(f, rng=1)
    assert np.log(y / f).std() == pytest.approx(0.4, rel=0.03) and abs(np.log(y / f).mean()) < 0.01
    y = ERRORS[2].sample(f, rng=2)
    assert (y - f).std() == pytest.approx(math.sqrt(0.25 + 1.0), rel=0.03)


# --- weighted residuals ---------------------------------------------------------------------------------

def test_iwres():
    f, y, c, lim = problem()
    r = residuals(f, y, c, lim, ERRORS[0])
    np.testing.assert_allclose(r[~c], (np.log(y) - np.log(f))[~c] / 0.4)
    assert np.all(np.isnan(r[c]))
    r = residuals(f, y, c, lim, ERRORS[2])
    np.testing.assert_allclose(r[~c], ((y - f) / np.sqrt(0.25 + (0.2 * f) ** 2))[~c])
    g = f.copy()
    g[0] = -1.0
    assert np.isnan(residuals(g, y, c, lim, ERRORS[0])[0])  # unusable prediction: NaN, no warning
    # the log-sigma form tolerates σ's from a failed fit
    assert np.all(np.isnan(residuals("proportional", f, y, c, [np.nan])))
