"""Residual error models (cartkin.stats.error_models): each model's likelihood against scipy.stats
densities, its gradient against finite differences (also for censored points far in both tails),
failure rules, weighted residuals, simulation, the SAEM σ step and the registry."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

from cartkin import CartkinError
from cartkin.stats.error_models import (ERROR_MODELS, AdditiveError, Combined1Error, Combined2Error, ErrorModel,
                                        NegLogLik, ProportionalError, error_model, error_model_names)

# each model with σ's and its SD written out independently of the implementation: on the log scale for
# proportional (log y ~ N(log f, sd²)), on the natural scale otherwise (y ~ N(f, sd²))
SIGMAS = {"proportional": [0.4], "additive": [0.7], "combined1": [0.5, 0.2], "combined2": [0.5, 0.2]}


def expected_sd(name, f, sigmas=None):
    s = SIGMAS[name] if sigmas is None else sigmas
    f = np.asarray(f, dtype=float)
    if name in ("proportional", "additive"):
        return np.full(f.shape, s[0])
    if name == "combined1":
        return s[0] + s[1] * np.abs(f)
    return np.sqrt(s[0] ** 2 + (s[1] * f) ** 2)


NAMES = list(SIGMAS)


def model_of(name):
    return error_model(name), np.array(SIGMAS[name])


def problem(seed=0, n=8):
    rng = np.random.default_rng(seed)
    f = rng.uniform(1, 10, n)
    y = f * np.exp(rng.normal(0, 0.3, n))
    cens = np.zeros(n, bool)
    cens[[2, 5]] = True
    lim = np.where(cens, 3.0, np.nan)
    return f, y, cens, lim


def nll(em, f, y, c, lim, sigmas):
    return em.negative_log_likelihood(f, y, c, lim, sigmas).value


def log_density(name, y, f):
    sd = expected_sd(name, f)
    if name == "proportional":
        return stats.lognorm.logpdf(y, s=sd, scale=f)
    return stats.norm.logpdf(y, f, sd)


def log_probability_below(name, limit, f):
    sd = expected_sd(name, f)
    if name == "proportional":
        return stats.lognorm.logcdf(limit, s=sd, scale=f)
    return stats.norm.logcdf(limit, f, sd)


# --- values ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_uncensored_terms_are_minus_the_log_density_of_y(name):
    em, sig = model_of(name)
    f, y, _, _ = problem()
    none = np.zeros(f.size, bool)
    result = em.negative_log_likelihood(f, y, none, np.full(f.size, np.nan), sig)
    assert isinstance(result, NegLogLik)
    assert result.value == pytest.approx(-log_density(name, y, f).sum(), rel=1e-12)
    np.testing.assert_allclose(em.pointwise(f, y, none, np.nan, sig), -log_density(name, y, f), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_m3_term_is_minus_the_log_probability_below_the_limit(name):
    em, sig = model_of(name)
    f = np.array([0.5, 2.0, 7.0])
    limit = 1.5
    values = em.pointwise(f, np.full(3, limit), np.ones(3, bool), np.full(3, limit), sig)
    np.testing.assert_allclose(values, -log_probability_below(name, limit, f), rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_m3_term_far_in_both_tails(name):
    """Far below the limit the term vanishes (→ Φ(u) → 1); far above it stays finite and matches the
    asymptotic series Φ(u) = φ(u)/(−u) · (1 − 1/u² + 3/u⁴ − 15/u⁶) for u → −∞ (where Φ underflows)."""
    em = error_model(name)
    sig = np.array([1.0] if em.n_sigmas == 1 else [1.0, 1e-6])  # small b: u is not bounded by −1/b
    g = np.log if name == "proportional" else (lambda x: x)
    limit = 1.0
    for f in (1e-6, 1e-12) if name == "proportional" else (-1e2, -1e6):
        value = em.pointwise([f], [limit], [True], [limit], sig)[0]
        u = (g(limit) - g(f)) / expected_sd(name, f, sig)
        assert 0.0 <= value < 1e-6 and value == pytest.approx(-stats.norm.logcdf(u), rel=1e-6, abs=1e-300)
    for f in (1e30, 1e300) if name == "proportional" else (1e2, 1e4, 1e5):
        value = em.pointwise([f], [limit], [True], [limit], sig)[0]
        u = float((g(limit) - g(f)) / expected_sd(name, f, sig))
        assert u < -40
        w = 1 / u
        series = 1 - w ** 2 + 3 * w ** 4 - 15 * w ** 6
        expected = 0.5 * u * u + math.log(-u) + 0.5 * math.log(2 * math.pi) - math.log(series)
        assert math.isfinite(value) and value == pytest.approx(expected, rel=1e-10), (f, u)


@pytest.mark.parametrize("name", NAMES)
def test_censored_and_uncensored_parts_make_a_probability_distribution(name):
    """P(y < L) + ∫_L^∞ p(y) dy = 1: the M3 term and the density are on the same footing."""
    em, sig = model_of(name)
    f, limit = 4.0, 2.5
    below = math.exp(-nll(em, [f], [limit], [True], [limit], sig))
    density = lambda y: math.exp(-nll(em, [f], [y], [False], [np.nan], sig))  # noqa: E731
    above, _ = integrate.quad(density, limit, np.inf)
    assert below + above == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_per_observation_sigmas_and_broadcasting(name):
    em, sig = model_of(name)
    f, y, c, lim = problem(3, 12)
    total = em.negative_log_likelihood(f, y, c, lim, sig)
    per_obs = em.negative_log_likelihood(f, y, c, lim, np.repeat(sig[:, None], f.size, axis=1))
    assert per_obs.value == pytest.approx(total.value, rel=1e-13)
    assert per_obs.d_log_sigma.shape == (em.n_sigmas, f.size) and total.d_log_sigma.shape == (em.n_sigmas,)
    np.testing.assert_allclose(per_obs.d_log_sigma.sum(axis=1), total.d_log_sigma, rtol=1e-12)
    # rows of predictions (e.g. MCMC samples) against one set of observations
    rows = np.vstack([f, 2 * f])
    values = em.pointwise(rows, y, c, lim, np.repeat(sig[:, None], f.size, axis=1))
    assert values.shape == rows.shape
    assert values[1].sum() == pytest.approx(nll(em, 2 * f, y, c, lim, sig), rel=1e-13)
    # different σ's per observation: the sum of one-observation likelihoods
    varied = sig[:, None] * np.linspace(0.5, 2.0, f.size)[None, :]
    single = sum(nll(em, f[i:i + 1], y[i:i + 1], c[i:i + 1], lim[i:i + 1], varied[:, i]) for i in range(f.size))
    assert nll(em, f, y, c, lim, varied) == pytest.approx(single, rel=1e-12)


# --- gradients -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_central_finite_differences(name):
    em, sig = model_of(name)
    f, y, c, lim = problem(1)
    result = em.negative_log_likelihood(f, y, c, lim, sig)
    for i in range(f.size):
        h = 1e-6 * f[i]
        e = np.zeros(f.size)
        e[i] = h
        fd = (nll(em, f + e, y, c, lim, sig) - nll(em, f - e, y, c, lim, sig)) / (2 * h)
        assert result.d_pred[i] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    for j in range(em.n_sigmas):
        e = np.zeros(em.n_sigmas)
        e[j] = 1e-6
        fd = (nll(em, f, y, c, lim, sig * np.exp(e)) - nll(em, f, y, c, lim, sig * np.exp(-e))) / 2e-6
        assert result.d_log_sigma[j] == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_in_the_tails_match_finite_differences(name):
    """Censored points far above and far below the limit, uncensored points far from the prediction; one
    point at a time, so that tiny terms are not lost next to large ones."""
    em, sig = model_of(name)
    f = np.array([0.05, 60.0, 400.0, 2.0, 2.0])
    y = np.array([3.0, 3.0, 3.0, 40.0, 0.1])
    c = np.array([True, True, True, False, False])
    lim = np.array([3.0, 3.0, 3.0, np.nan, np.nan])
    result = em.pointwise_gradient(f, y, c, lim, np.repeat(sig[:, None], f.size, axis=1))
    for i in range(f.size):
        def one(x, s=sig):
            return nll(em, [x], y[i:i + 1], c[i:i + 1], lim[i:i + 1], s)
        h = 1e-6 * f[i]
        fd = (one(f[i] + h) - one(f[i] - h)) / (2 * h)
        assert result[1][i] == pytest.approx(fd, rel=1e-6, abs=1e-12), i
        for j in range(em.n_sigmas):
            e = np.zeros(em.n_sigmas)
            e[j] = 1e-6
            fd = (one(f[i], sig * np.exp(e)) - one(f[i], sig * np.exp(-e))) / 2e-6
            assert result[2][j, i] == pytest.approx(fd, rel=1e-6, abs=1e-8), (i, j)  # FD noise ~1e-9


# --- failure rules ----------------------------------------------------------------------------------------------

def test_bad_predictions_give_inf_not_nan():
    em, sig = model_of("proportional")
    f, y, c, lim = problem()
    for bad in (0.0, -1.0, np.nan, np.inf):
        g = f.copy()
        g[3] = bad
        value, d_pred, d_log_sigma = em.negative_log_likelihood(g, y, c, lim, sig)
        assert value == math.inf
        assert np.all(d_pred == 0) and np.all(d_log_sigma == 0)
        assert em.pointwise(g, y, c, lim, sig)[3] == math.inf
    # a censored point (index 2) predicted at or below zero is below its limit for sure: its term is the
    # f -> 0+ limit of the M3 term, 0, and the others are unchanged
    g = f.copy()
    g[2] = 1e-200
    near_zero = em.negative_log_likelihood(g, y, c, lim, sig)
    for bad in (0.0, -1e-12):
        g[2] = bad
        value, d_pred, d_log_sigma = em.negative_log_likelihood(g, y, c, lim, sig)
        assert value == pytest.approx(near_zero.value, rel=1e-12)
        assert d_pred[2] == 0 and np.allclose(d_pred, near_zero.d_pred)
        assert np.allclose(d_log_sigma, near_zero.d_log_sigma)
        assert em.pointwise(g, y, c, lim, sig)[2] == 0.0
    # on the natural scale a prediction <= 0 is legitimate; only non-finite ones fail
    for name in NAMES[1:]:
        em, sig = model_of(name)
        g = f.copy()
        g[3] = -1.0
        assert math.isfinite(nll(em, g, y, c, lim, sig))
        g[3] = np.nan
        assert nll(em, g, y, c, lim, sig) == math.inf


def test_predictions_underflowed_to_denormals_keep_a_finite_gradient():
    """A leukaemia killed far below its data can be predicted at 5e-324: 1/f would overflow to inf and
    0 x inf give NaN gradients, which sent L-BFGS-B into thousands of useless evaluations."""
    em, sig = model_of("proportional")
    f, y, c, lim = problem()
    for k in (2, 3):  # a censored and a measured point
        for tiny in (5e-324, 1e-310, 1e-300):
            g = f.copy()
            g[k] = tiny
            value, d_pred, d_log_sigma = em.negative_log_likelihood(g, y, c, lim, sig)
            assert math.isfinite(value)
            assert np.all(np.isfinite(d_pred)) and np.all(np.isfinite(d_log_sigma))
            assert (d_pred[k] < 0) == (not c[k])  # raising a measured point's prediction lowers −log L
        # above the floor the derivative is the exact one
        g = f.copy()
        g[k] = 1e-200
        h = 1e-206
        up, down = g.copy(), g.copy()
        up[k] += h
        down[k] -= h
        exact = em.negative_log_likelihood(g, y, c, lim, sig).d_pred[k]
        numeric = (nll(em, up, y, c, lim, sig) - nll(em, down, y, c, lim, sig)) / (2 * h)
        assert exact == pytest.approx(numeric, rel=1e-4, abs=1e-300)


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
        ProportionalError().negative_log_likelihood(*args, [1.0])


def test_natural_scale_models_accept_non_positive_observations():
    for name in NAMES[1:]:
        em, sig = model_of(name)
        assert nll(em, [0.5], [-0.5], [False], [np.nan], sig) == pytest.approx(-log_density(name, -0.5, 0.5)[()])


def test_wrong_number_of_sigmas_is_refused():
    with pytest.raises(CartkinError, match=r"combined2 residual error has 2 sigma\(s\) \(sigma_add_y, sigma_prop_y\)"):
        Combined2Error().negative_log_likelihood([1.0], [1.0], [False], [np.nan], [0.1])
    with pytest.raises(CartkinError, match="proportional residual error has 1 sigma"):
        ProportionalError().negative_log_likelihood([1.0], [1.0], [False], [np.nan], [0.1, 0.2])


# --- residuals, simulation and the SAEM step ------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_iwres(name):
    em, sig = model_of(name)
    f, y, c, lim = problem()
    g = np.log if name == "proportional" else (lambda x: x)
    r = em.residuals(f, y, c, sig)
    np.testing.assert_allclose(r[~c], ((g(y) - g(f)) / expected_sd(name, f))[~c], rtol=1e-13)
    assert np.all(np.isnan(r[c]))
    bad = f.copy()
    bad[0] = np.nan
    assert np.isnan(em.residuals(bad, y, c, sig)[0])
    assert np.all(np.isnan(em.residuals(f, y, c, np.full(em.n_sigmas, np.nan))))  # σ's of a failed fit
    if name == "proportional":
        bad[0] = -1.0
        assert np.isnan(em.residuals(bad, y, c, sig)[0])  # unusable prediction: NaN, no warning


@pytest.mark.parametrize("name", NAMES)
def test_sampling_matches_the_error_model(name):
    em, sig = model_of(name)
    f = np.repeat([2.0, 20.0], 20000)
    y = em.sample(f, sig, rng=1)
    g = np.log if name == "proportional" else (lambda x: x)
    for value in (2.0, 20.0):
        r = (g(y) - g(f))[f == value]
        assert r.std() == pytest.approx(expected_sd(name, value), rel=0.03)
        assert abs(r.mean()) < 0.05 * expected_sd(name, value)
    assert np.array_equal(em.sample(f, sig, np.random.default_rng(4)), em.sample(f, sig, 4))  # one draw each


@pytest.mark.parametrize("name", NAMES)
def test_saem_sigma_step_recovers_the_sigmas_of_simulated_residuals(name):
    """The σ's from the statistics of complete-data residuals maximise their likelihood, and for a large
    sample from the model's own `sample` they are close to the truth."""
    em, sig = model_of(name)
    rng = np.random.default_rng(2)
    f = np.exp(rng.uniform(-1, 4, 40000))
    r = em.transformed_residuals(f, em.sample(f, sig, rng))
    estimate = em.sigmas_from_statistics(em.statistics(f, r, np.ones(em.n_sigmas)))
    np.testing.assert_allclose(estimate, sig, rtol=0.05)

    def complete(s):
        sd = em.sd(f, s)
        return np.sum(np.log(sd) + 0.5 * r * r / sd ** 2)
    best = complete(estimate)
    for j in range(em.n_sigmas):
        for step in (0.99, 1.01):
            moved = estimate.copy()
            moved[j] *= step
            assert complete(moved) > best


def test_closed_form_sigma_step_is_the_root_mean_square():
    r = np.array([0.1, -0.3, 0.2, 0.4])
    for em in (ProportionalError(), AdditiveError()):
        s = em.statistics(np.ones(4), r, [1.0])
        assert em.sigmas_from_statistics(s)[0] == pytest.approx(math.sqrt(np.mean(r * r)), rel=1e-14)
        # SAEM averages statistics, not σ's
        two = em.sigmas_from_statistics(0.5 * (s + em.statistics(np.ones(4), 2 * r, [1.0])))
        assert two[0] == pytest.approx(math.sqrt(2.5 * np.mean(r * r)), rel=1e-14)


# --- names and the registry ----------------------------------------------------------------------------------

def test_registry_and_names():
    assert list(ERROR_MODELS) == ["proportional", "additive", "combined1", "combined2"]
    for name, cls in ERROR_MODELS.items():
        assert issubclass(cls, ErrorModel) and cls.name == name and error_model(name) == cls()
    assert error_model_names() == ("proportional", "additive", "combined1", "combined2", "combined")
    assert isinstance(error_model("combined"), Combined2Error) and error_model("combined").name == "combined2"
    instance = Combined1Error()
    assert error_model(instance) is instance
    assert ProportionalError().sigma_names(["nTA", "nB"]) == ("sigma_nTA", "sigma_nB")
    assert AdditiveError().sigma_names("nTA") == ("sigma_nTA",)
    for em in (Combined1Error(), Combined2Error()):
        assert em.n_sigmas == 2
        assert em.sigma_names(["nTA", "nB"]) == ("sigma_add_nTA", "sigma_prop_nTA", "sigma_add_nB", "sigma_prop_nB")


@pytest.mark.parametrize("name", ["lognormal", "Combined", "", None])
def test_unknown_error_model_is_a_one_line_error_listing_the_choices(name):
    with pytest.raises(CartkinError) as info:
        error_model(name)
    message = str(info.value)
    assert "\n" not in message and repr(name) in message
    assert message.endswith("choose one of proportional, additive, combined1, combined2, combined")
