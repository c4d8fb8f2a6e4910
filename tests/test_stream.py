"""Chunked population summaries equal the whole-population batch, whatever the chunking or threads."""
import numba
import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.metrics import exposure_summary
from cartkin.population import LogNormal

TIMES = np.linspace(0.0, 120.0, 25)
REGIMEN = cartkin.Regimen.single(dose_per_kg=1e5)


@pytest.fixture(scope="module")
def population():
    return cartkin.Population("il10", n=60, seed=7,
                              variability=cartkin.Variability(cv={"rho": 20, "kappa": 30, "k_exh": 30}),
                              covariates={"L0": LogNormal(1000.0, 100.0)})


def test_chunks_equal_whole_batch(population):
    whole = cartkin.simulate_batch("il10", REGIMEN, TIMES, population.parameters(), progress=False)
    expected = exposure_summary(TIMES, whole.observable("car_blood"))
    for chunk in (7, 60, 1000):
        got = cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, chunk_size=chunk, progress=False)
        assert got.n_subjects == 60 and got.ok.all()
        assert set(got.values) == set(expected)
        for name, v in expected.items():
            np.testing.assert_array_equal(got.values[name], v, err_msg=f"{name}, chunk {chunk}")
    # a plain parameter matrix gives the same numbers as the population object
    matrix = cartkin.simulate_summaries("il10", REGIMEN, TIMES, population.parameters(), chunk_size=13,
                                        progress=False)
    np.testing.assert_array_equal(matrix.values["cmax"], expected["cmax"])


def test_threads_do_not_change_results(population):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, chunk_size=16, progress=False)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, chunk_size=16, progress=False)
    finally:
        numba.set_num_threads(before)
    for name in one.values:
        np.testing.assert_array_equal(one.values[name], two.values[name])
    np.testing.assert_array_equal(one.counters, two.counters)


def test_custom_summary_and_progress(population):
    seen = []

    def response(batch):
        blasts = batch.observable("blast_pct")
        return {"responder": cartkin.metrics.response(batch.times, blasts).astype(float),
                "peak_il6": np.nanmax(batch.observable("il6"), axis=1)}

    got = cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, summarize=response, chunk_size=25,
                                     progress=seen.append)
    assert got.values["responder"].shape == (60,)
    assert np.all(got.values["peak_il6"] > 0)
    assert seen and seen[-1] == 60 and seen == sorted(seen)


def test_failures_are_reported_not_hidden(population):
    got = cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, max_steps=20, progress=False)
    assert not got.ok.any()
    assert got.failures() and sum(got.failures().values()) == 60
    assert np.isnan(got.values["cmax"]).all()


def test_bad_arguments(population):
    with pytest.raises(CartkinError, match="chunk_size"):
        cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, chunk_size=0)
    with pytest.raises(CartkinError, match="shape"):
        cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, progress=False,
                                   summarize=lambda batch: {"x": np.zeros(3)})
    with pytest.raises(CartkinError, match="not il10"):
        cartkin.simulate_summaries("il10", REGIMEN, TIMES, cartkin.Population("liu2022", n=3), progress=False)
