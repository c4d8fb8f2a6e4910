"""Runs on a Dask cluster equal runs in one process, bit for bit; faults and interrupts leave nothing behind.

Uses a LocalCluster of two worker processes (one thread each). Skipped only if dask.distributed is not
installed (it is in the test extra: pip install -e ".[test]").
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.execution import DaskExecutor, InProcess, connect, executor, using
from cartkin.scenario import Scenario, compare

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                                        "(pip install \"cartkin[distributed]\")")

TIMES = np.linspace(0.0, 56.0, 15)
REGIMEN = cartkin.Regimen.single(dose_per_kg=1e5)
SCENARIO = textwrap.dedent("""
    [scenario]
    name = "short"
    model = "il10"
    horizon_days = 60

    [population]
    n = 2000
    seed = 11

    [population.variability]
    rho = 20
    kappa = 40
    k_exh = 40
    B0 = 30

    [population.covariates]
    L0 = { distribution = "lognormal", median = 1000, cv = 150 }

    [outcomes.exposure]
    observable = "car_blood"
    limit = 0.1

    [outcomes.response]
    observable = "blast_pct"
    day = 28
    relapse_days = [56]

    [outcomes.peak]
    observables = ["il6"]

    [[arms]]
    name = "IL-10 CAR T"
    parameters = { armored = 1 }
    regimen = { dose_per_kg = 0.1e6 }

    [[arms]]
    name = "conventional"
    parameters = { armored = 0 }
    regimen = { dose_per_kg = 1e6 }
""")


@pytest.fixture(scope="module")
def client():
    # workers are spawned processes: they inherit this environment (PYTHONPATH, CARTKIN_CACHE_DIR)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture(scope="module")
def population():
    return cartkin.Population("il10", n=6000, seed=5,
                              variability=cartkin.Variability(cv={"rho": 20, "kappa": 30, "k_exh": 30}),
                              covariates={"L0": cartkin.population.LogNormal(1000.0, 150.0)})


@pytest.fixture(scope="module")
def in_process(population):
    return cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, progress=False)


def assert_same(a, b):
    assert set(a.values) == set(b.values)
    for name in a.values:
        np.testing.assert_array_equal(a.values[name], b.values[name], err_msg=name)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.counters, b.counters)


def test_workers_run_this_cartkin(client):
    files = client.run(lambda: __import__("cartkin").__file__)
    assert set(files.values()) == {cartkin.__file__}


def test_importing_cartkin_never_imports_dask():
    code = ("import sys, cartkin, cartkin.cli, cartkin.scenario, cartkin.execution; "
            "assert not {'dask', 'distributed'} & set(sys.modules), sorted(m for m in sys.modules if 'dask' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())


def test_simulate_summaries_on_a_cluster_equal_one_process(client, population, in_process):
    for chunk in (500, 777):
        on_cluster = cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, chunk_size=chunk,
                                                progress=False, client=client)
        assert_same(in_process, on_cluster)
    # the same through the context manager, with a plain matrix and a custom model copy (sent by value)
    custom = cartkin.Model(**{f: getattr(population.model, f) for f in
                              ("name", "states", "parameter_info", "equations", "observable_info", "initial",
                               "dose", "breakpoints")} | {"description": "a copy"})
    with using(client):
        assert isinstance(executor(), DaskExecutor)
        matrix = cartkin.simulate_summaries(custom, REGIMEN, TIMES, population.parameters(0, 1000), chunk_size=300,
                                            progress=False)
    assert isinstance(executor(), InProcess)
    for name, v in matrix.values.items():
        np.testing.assert_array_equal(v, in_process.values[name][:1000])


def test_progress_counts_every_subject_on_a_cluster(client, population):
    seen = []
    cartkin.simulate_summaries("il10", REGIMEN, TIMES[:5], cartkin.Population("il10", n=900, seed=1),
                               chunk_size=250, progress=seen.append, client=client)
    assert seen == sorted(seen) and seen[-1] == 900 and len(seen) == 4


def compare_files(tmp_path, name, **options):
    from cartkin import report
    scenario = Scenario.from_toml(tmp_path / "short.toml")
    folder = tmp_path / name
    folder.mkdir()
    report.write(compare(scenario, progress=False, **options), folder)
    return {f: (folder / f).read_bytes() for f in ("summary.csv", "patients.csv")}


def test_compare_on_a_cluster_writes_identical_tables(client, tmp_path):
    (tmp_path / "short.toml").write_text(SCENARIO)
    here = compare_files(tmp_path, "here")
    assert here["patients.csv"].count(b"\n") > 2 * 2000
    assert compare_files(tmp_path, "cluster", client=client) == here
    assert compare_files(tmp_path, "cluster-333", client=client, chunk_size=333) == here


def test_trial_replicates_on_a_cluster_equal_those_in_process(client, tmp_path):
    """Replicates with draws and a per-patient dose: the same numbers on 2 workers and in this process."""
    from cartkin.scenario import run_trials
    (tmp_path / "draws.csv").write_text("rho,rho_cv\n1.0,20\n0.5,30\n")
    text = SCENARIO.replace("n = 2000", "n = 10").replace(
        "regimen = { dose_per_kg = 1e6 }",
        'regimen = { dose_per_kg = { distribution = "lognormal", median = 1e6, cv = 50, lower = 2e5, upper = 3e6 } }')
    text += '\n[population.uncertainty]\ndraws = "draws.csv"\n\n[trial]\nsize = 6\nreplicates = 9\n'
    (tmp_path / "t.toml").write_text(text)
    scenario = Scenario.from_toml(tmp_path / "t.toml")
    here = run_trials(scenario, progress=False)
    there = run_trials(scenario, progress=False, client=client, chunk_size=7)
    for arm, values in here.values.items():
        for name, v in values.items():
            np.testing.assert_array_equal(there.values[arm][name], v)


def test_cli_compare_with_a_local_cluster(tmp_path):
    (tmp_path / "short.toml").write_text(SCENARIO)
    toml = str(tmp_path / "short.toml")
    assert main(["compare", toml, "-n", "400", "--no-plots", "-o", str(tmp_path / "here")]) == 0
    assert main(["compare", toml, "-n", "400", "--no-plots", "-o", str(tmp_path / "cluster"),
                 "--cluster", "local:2"]) == 0
    for f in ("summary.csv", "patients.csv"):
        assert (tmp_path / "here" / f).read_bytes() == (tmp_path / "cluster" / f).read_bytes()


def test_a_worker_killed_mid_run_is_recomputed_identically(client, population, in_process):
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))
    killed = []

    def kill_once(done):  # on the first finished chunk, one worker process dies (SIGKILL: no goodbye)
        if not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(done)

    start = time.perf_counter()
    on_cluster = cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, chunk_size=250,
                                            progress=kill_once, client=client)
    assert killed and killed[0] < population.n
    assert_same(in_process, on_cluster)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker, for the tests that follow
    assert victim not in client.run(os.getpid).values()
    assert time.perf_counter() - start < 60


def test_interrupt_cancels_every_submitted_chunk(client, population):
    def interrupt(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cartkin.simulate_summaries("il10", REGIMEN, TIMES, population, chunk_size=200, progress=interrupt,
                                   client=client)
    deadline = time.monotonic() + 20
    while (left := client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == 0


def test_interrupted_cli_run_writes_no_folder(tmp_path, monkeypatch, capsys):
    import cartkin.scenario as scenario_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scenario_module, "compare", interrupted)
    assert main(["compare", "-n", "10", "-o", str(tmp_path / "out"), "--cluster", "local:1"]) == 130
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_unreachable_scheduler_is_one_line_naming_it(tmp_path, capsys):
    start = time.perf_counter()
    code = main(["compare", "-n", "10", "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "tcp://127.0.0.1:9" in err, err
    assert time.perf_counter() - start < 20
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--scheduler", "tcp://nowhere"], "expected tcp://HOST:PORT"),
    (["--cluster", "remote:2"], "expected local:N"),
    (["--cluster", "local:0"], "expected local:N"),
    (["--cluster", "local:1", "--scheduler", "tcp://127.0.0.1:9"], "not both"),
])
def test_bad_cluster_options(tmp_path, capsys, argv, message):
    assert main(["compare", "-n", "10", "-o", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_client_must_be_a_client():
    with pytest.raises(CartkinError, match="distributed.Client"):
        executor("tcp://127.0.0.1:8786")
    with connect() as nothing:
        assert nothing is None


def liu_data(n, seed=3):
    """n liu2022 subjects with random rTA0, lTA0 and proportional noise on nTA (a small, fast fit)."""
    from cartkin.data import Dataset
    from cartkin.data.dataset import Subject

    model = cartkin.load_model("liu2022")
    rng = np.random.default_rng(seed)
    times = np.array([1.0, 2, 4, 7, 14, 28, 56])
    subjects = []
    for i in range(n):
        truth = {q: model.parameters[q] * np.exp(rng.normal(0, 0.2)) for q in ("rTA0", "lTA0")}
        y = cartkin.simulate(model, None, times, truth).observable(model.observables[0])
        y = y * np.exp(rng.normal(0, 0.2, times.size))
        subjects.append(Subject(str(i + 1), times, y, np.zeros(times.size, dtype=int), np.zeros(times.size, bool),
                                np.full(times.size, np.nan)))
    return model, Dataset(tuple(subjects), model.observables[:1])


def test_individual_fits_on_a_cluster_equal_one_process(client):
    from cartkin.estimation import fit

    model, data = liu_data(4)
    options = dict(estimate=["rTA0", "lTA0"], starts=2, seed=4, sigma={"sigma_nTA": 0.2}, profile=["lTA0"])
    here = fit(model, data, progress=False, **options)
    there = fit(model, data, progress=False, client=client, **options)
    for a, b in zip(here.fits, there.fits):
        np.testing.assert_array_equal(a.estimates, b.estimates)
        np.testing.assert_array_equal(a.standard_errors, b.standard_errors)
        np.testing.assert_array_equal(a.parameters, b.parameters)
        assert (a.objective, a.converged, a.warnings) == (b.objective, b.converged, b.warnings)
    assert len(here.profiles) == len(there.profiles) == 4
    for a, b in zip(here.profiles, there.profiles):
        assert (a.id, a.parameter, a.lower, a.upper, a.warnings) == (b.id, b.parameter, b.lower, b.upper, b.warnings)
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.objectives, b.objectives)


def test_cli_multistart_fit_with_a_local_cluster_writes_identical_estimates(tmp_path):
    _, data = liu_data(4)
    csv = str(data.to_csv(tmp_path / "data.csv"))
    args = ["fit", csv, "--model", "liu2022", "--estimate", "rTA0,lTA0", "--sigma", "sigma_nTA=0.2", "--starts", "3",
            "--profile", "rTA0", "--no-plots"]
    assert main(args + ["-o", str(tmp_path / "here")]) == 0
    assert main(args + ["-o", str(tmp_path / "cluster"), "--cluster", "local:2"]) == 0
    for f in ("estimates.csv", "profiles.csv", "predictions.csv"):
        assert (tmp_path / "here" / f).read_bytes() == (tmp_path / "cluster" / f).read_bytes(), f


def test_population_fit_starts_and_vpc_on_a_cluster_equal_one_process(client, tmp_path):
    """`cartkin fit --population --starts 2 --vpc` and `cartkin vpc` joining a running cluster
    (--scheduler) write the same files as in one process; VPC replicates in chunks of any size give the
    same check."""
    from cartkin.estimation import vpc

    _, data = liu_data(6, seed=5)
    csv = str(data.to_csv(tmp_path / "data.csv"))
    address = client.scheduler.address
    args = ["fit", csv, "--model", "liu2022", "--population", "--estimate", "rTA0,lTA0", "--iterations", "20,10",
            "--chains", "2", "--starts", "2", "--seed", "1", "--vpc", "--replicates", "20", "--no-plots"]
    assert main(args + ["-o", str(tmp_path / "here")]) == 0
    assert main(args + ["-o", str(tmp_path / "cluster"), "--scheduler", address]) == 0
    for f in ("population.csv", "individuals.csv", "convergence.csv", "vpc.csv"):
        assert (tmp_path / "here" / f).read_bytes() == (tmp_path / "cluster" / f).read_bytes(), f
    here = json.loads((tmp_path / "here" / "fit.json").read_text())
    there = json.loads((tmp_path / "cluster" / "fit.json").read_text())
    assert here["settings"]["start_minus2loglik"] == there["settings"]["start_minus2loglik"]
    assert len(set(here["settings"]["start_minus2loglik"])) == 2  # two different runs
    vpc_args = ["vpc", str(tmp_path / "here"), "--replicates", "21", "--seed", "3"]
    for name, extra in (("a", []), ("b", ["--scheduler", address])):
        (tmp_path / name).mkdir()
        assert main(vpc_args + ["-o", str(tmp_path / name / "vpc.png"), *extra]) == 0
    assert (tmp_path / "a" / "vpc.csv").read_bytes() == (tmp_path / "b" / "vpc.csv").read_bytes()
    one = vpc(tmp_path / "here", replicates=21, seed=3)
    for chunk in (4, 21):
        other = vpc(tmp_path / "here", replicates=21, seed=3, client=client, chunk_size=chunk)
        assert one.failed == other.failed
        for a, b in zip(one.checks, other.checks, strict=True):
            np.testing.assert_array_equal(a.simulated, b.simulated)
            np.testing.assert_array_equal(a.simulated_censored, b.simulated_censored)
