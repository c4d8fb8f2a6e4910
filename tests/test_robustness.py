"""Input cartkin refuses, and answers it must not get silently wrong.

Every refusal is one line `cartkin: error: ...` on stderr, exit code 2, nothing written, and is found
before the heavy work (fits, populations) starts.
"""
import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.data import Dataset, read_data

GOOD = "ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,7,nTA\n2,1,3,nTA\n2,3,4,nTA\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def listing(folder: Path) -> dict:
    """Every file under folder with its content (to show that nothing was written or changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv, capsys, folder: Path, *needles) -> str:
    """Run the CLI; it must exit 2 with one error line naming the problem and leave folder untouched."""
    before = listing(folder)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartkin: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert listing(folder) == before
    return lines[0]


# --- 3. key=value options: a repeated key is refused -------------------------------------------------

@pytest.mark.parametrize("option, needle", [
    (["--dvid", "1=nTA,1=nB"], "--dvid: 1 is given twice"),
    (["--map", "TIME=TIME", "--map", "TIME=DV"], "--map: TIME is given twice"),
    (["--covariate", "WT=nB0,WT=nTN0"], "--covariate: WT is given twice"),
    (["--fix", "ka=1", "--fix", "ka=2"], "--fix ka is given twice"),
    (["--fix", "ka=nan"], "--fix 'ka=nan'"),
])
def test_repeated_or_bad_keys_are_refused(tmp_path, capsys, option, needle):
    data = write(tmp_path / "d.csv", GOOD)
    refused(["fit", data, "--model", "liu2022", "-o", tmp_path / "out", *option], capsys, tmp_path, needle)


# --- 6. a negative DV is an error, not a censored point ----------------------------------------------

def test_negative_dv_is_not_censored_by_a_floor(tmp_path, capsys):
    data = write(tmp_path / "d.csv", "ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,-3,nTA\n")
    with pytest.raises(CartkinError, match=r"line 3: DV = -3 is negative"):
        read_data(data, "liu2022", censor_floor=0.2)
    with pytest.raises(CartkinError, match=r"is negative"):
        read_data(data, "liu2022", lloq=0.5)
    refused(["fit", data, "--model", "liu2022", "-o", tmp_path / "out", "--censor-floor", "0.2"], capsys,
            tmp_path, "DV = -3 is negative")
    # a value at or below the floor but not negative is still censored at it
    ok = read_data(write(tmp_path / "z.csv", "ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,0,nTA\n"), "liu2022",
                   censor_floor=0.2)
    assert ok.subjects[0].censored.tolist() == [False, True]
    # additive-error data may be negative
    add = read_data(data, "liu2022", positive=False)
    assert add.subjects[0].values.tolist() == [5.0, -3.0]


# --- 5. a parameter without information has no SE (NaN), not SE 0 --------------------------------------

def test_a_parameter_without_information_gets_nan_se_and_bounds():
    model = cartkin.load_model("liu2022")
    data = Dataset.from_arrays(model, ["1"], [2.0], [1.05], ["nTA"])
    result = cartkin.fit(model, data, estimate=["rTA0", "ka"], sigma={"sigma_nTA": 0.5}, starts=1)
    f = result.fits[0]
    k = list(f.names).index("ka")
    assert np.isfinite(f.estimates[k])
    assert math.isnan(f.standard_errors[k]) and math.isnan(f.lower[k]) and math.isnan(f.upper[k])
    assert any("no information on" in w and "ka" in w for w in f.warnings)
    assert not f.converged


# --- 4 and 7. fit.json: data file hashes, damaged estimates --------------------------------------------

LIU_CLI = ["--map", "time=TIME,y=DV,y_ID=DVID", "--dvid", "1=nTA,2=nB", "--covariate", "Reg=nB0",
           "--censor-floor", "0.2"]
POP_DATA = ("ID,time,y,y_ID,Reg\n" + "".join(
    f"{i},{t},{v},1,{774 * i}\n" for i in (1, 2, 3, 4) for t, v in ((0, 0), (2, 1.05 * i), (5, 57.3 / i),
                                                                     (9, 30.0 + i), (14, 3.1 * i), (28, 0.4 * i))))


@pytest.fixture(scope="module")
def popfit(tmp_path_factory):
    """A small, quick population fit folder (4 subjects, few SAEM iterations)."""
    folder = tmp_path_factory.mktemp("popfit")
    data = write(folder / "pop.csv", POP_DATA)
    assert main(["fit", str(data), "--model", "liu2022", "-o", str(folder / "fit"), *LIU_CLI, "--population",
                 "--estimate", "rTA0,lTA0", "--iterations", "10,5", "--no-plots"]) == 0
    return folder / "fit", data


def copy_fit(popfit, tmp_path, change=None):
    import shutil
    dst = tmp_path / "fit"
    shutil.copytree(popfit[0], dst)
    info = json.loads((dst / "fit.json").read_text())
    if change:
        change(info)
    (dst / "fit.json").write_text(json.dumps(info))
    return dst


def test_fit_json_records_data_hashes_and_vpc_refuses_a_changed_file(popfit, tmp_path, capsys):
    fit, data = popfit
    info = json.loads((fit / "fit.json").read_text())
    assert info["data"]["sha256"] == [__import__("hashlib").sha256(data.read_bytes()).hexdigest()]
    folder = copy_fit(popfit, tmp_path)
    original = data.read_text()
    try:
        data.write_text(original + "4,60,0.3,1,3096\n")
        refused(["vpc", folder, "--replicates", "20"], capsys, tmp_path, "changed since the fit", "pop.csv")
    finally:
        data.write_text(original)


def test_an_old_fit_json_without_hashes_is_accepted_with_a_warning(popfit, tmp_path, capsys):
    folder = copy_fit(popfit, tmp_path, lambda info: info["data"].pop("sha256"))
    capsys.readouterr()
    assert main(["vpc", str(folder), "--replicates", "20"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("cartkin: warning:") and "no content hash" in err


def _set(path, value):
    def change(info):
        node = info
        for key in path[:-1]:
            node = node[key]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return change


DAMAGE = [
    (_set(["estimates", "sigma", "sigma_nTA"], -0.5), "sigma.sigma_nTA must be a finite number > 0"),
    (_set(["estimates", "sigma", "sigma_nTA"], KeyError), "estimates.sigma must give sigma_nTA"),
    (_set(["estimates", "fixed_effects"], [0.1]), "fixed_effects must be 2 finite numbers"),
    (_set(["estimates", "omega"], [[1.0, 2.0], [2.0, 1.0]]), "not positive semi-definite"),
    (_set(["estimates", "omega"], [[1e6, 0.0], [0.0, 1.0]]), "overflow"),
    (_set(["estimates", "omega"], [[1.0]]), "symmetric 2 x 2"),
]


@pytest.mark.parametrize("change, needle", DAMAGE)
def test_a_damaged_fit_json_is_refused_by_vpc_and_by_a_scenario(popfit, tmp_path, capsys, change, needle):
    folder = copy_fit(popfit, tmp_path, change)
    refused(["vpc", folder, "--replicates", "20"], capsys, tmp_path, "fit.json", needle)
    scenario = write(tmp_path / "s.toml", f'[scenario]\nmodel = "liu2022"\nhorizon_days = 30\n'
                                          f'[population]\nn = 5\nfrom_fit = "{folder}"\n'
                                          f'[[arms]]\nname = "a"\nregimen = {{dose_per_kg = 1e5}}\n')
    refused(["compare", scenario, "-o", tmp_path / "out", "--no-plots"], capsys, tmp_path,
            "population.from_fit", needle)


# --- 7. accepted nonsense in scenarios and in the API ---------------------------------------------------

def scenario_text(population="", outcomes="", arms=None, horizon=60):
    arms = arms or '[[arms]]\nname = "a"\nregimen = {dose_per_kg = 1e5}\n'
    return (f'[scenario]\nmodel = "il10"\nhorizon_days = {horizon}\n[population]\nn = 5\n{population}\n'
            f'[outcomes]\n{outcomes}\n{arms}')


@pytest.mark.parametrize("kwargs, needle", [
    (dict(outcomes="response_threshold = 150"), "outcomes.response_threshold: a percentage must be > 0 and <= 100"),
    (dict(outcomes="mrd_threshold = 120\nresponse_threshold = 100"), "outcomes.mrd_threshold: a percentage"),
    (dict(outcomes="aplasia_fraction = 1.5"), "outcomes.aplasia_fraction"),
    (dict(outcomes="mrd_threshold = 6\nresponse_threshold = 5"), "above the response threshold"),
    (dict(outcomes="relapse_days = [30, 20]"), "outcomes.response.relapse_days[1]: days must be increasing"),
    (dict(outcomes="relapse_days = [30, 30]"), "relapse_days[1]: days must be increasing without repeats"),
    (dict(arms='[[arms]]\nname = "late"\nregimen = {dose_per_kg = 1e5, time = 90}\n'),
     "arms[1]: an infusion on day 90 is at or after the horizon"),
    (dict(population="[population.variability]\nrho = 1e300"), "population.variability.rho: must be between 0"),
])
def test_nonsense_scenarios_are_refused(tmp_path, capsys, kwargs, needle):
    path = write(tmp_path / "s.toml", scenario_text(**kwargs))
    refused(["compare", path, "-o", tmp_path / "out", "--no-plots"], capsys, tmp_path, needle)


def test_huge_variability_is_refused_in_the_api():
    from cartkin.population.variability import Variability
    with pytest.raises(CartkinError, match="CV of rho must be between 0 and"):
        Variability(cv={"rho": 1e200})
    with pytest.raises(CartkinError, match="omega .variance. of rho must be between 0 and 100"):
        Variability(omega={"rho": 1e5})
    assert Variability(cv={"rho": 50.0}).variance("rho") == pytest.approx(math.log1p(0.25))


# --- 8-10. output folders and files: whole or nothing, checked first ------------------------------------

TINY = scenario_text(horizon=30)


def test_compare_replaces_its_previous_output_whole(tmp_path, capsys):
    scenario = write(tmp_path / "s.toml", TINY)
    out = tmp_path / "out"
    assert main(["compare", str(scenario), "-o", str(out), "--no-plots"]) == 0
    first = set(os.listdir(out))
    assert ".cartkin-output" in first
    assert json.loads((out / ".cartkin-output").read_text())["command"] == "compare"
    (out / "stale-figure.png").write_bytes(b"old")  # pretend an earlier run wrote it
    marker = json.loads((out / ".cartkin-output").read_text())
    marker["files"].append("stale-figure.png")
    (out / ".cartkin-output").write_text(json.dumps(marker))
    (out / "my-notes.txt").write_text("mine")  # not written by cartkin: kept
    assert main(["compare", str(scenario), "-o", str(out), "--no-plots"]) == 0
    after = set(os.listdir(out))
    assert "stale-figure.png" not in after and "my-notes.txt" in after
    assert after - {"my-notes.txt"} == first


def test_a_folder_of_another_command_or_of_other_files_is_refused(tmp_path, capsys, popfit):
    scenario = write(tmp_path / "s.toml", TINY)
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    refused(["compare", scenario, "-o", other, "--no-plots"], capsys, tmp_path,
            "is not empty and is not a cartkin output folder", "thesis.tex")
    fitdir, data = popfit
    refused(["compare", scenario, "-o", fitdir, "--no-plots"], capsys, tmp_path.parent,
            "holds the output of cartkin fit, not of cartkin compare")
    refused(["compare", scenario, "-o", "", "--no-plots"], capsys, tmp_path, "output folder name is empty")
    (tmp_path / "afile").write_text("x")
    refused(["compare", scenario, "-o", tmp_path / "afile" / "sub", "--no-plots"], capsys, tmp_path,
            "is a file, not a folder")


def test_an_individual_fit_over_a_population_fit_removes_its_fit_json(popfit, tmp_path, capsys):
    import shutil
    folder = tmp_path / "fit"
    shutil.copytree(popfit[0], folder)
    assert (folder / "fit.json").is_file()
    data = write(tmp_path / "d.csv", GOOD)
    assert main(["fit", str(data), "--model", "liu2022", "--estimate", "rTA0", "--starts", "1", "--no-plots",
                 "-o", str(folder)]) == 0
    assert not (folder / "fit.json").exists() and (folder / "estimates.csv").is_file()
    refused(["vpc", folder], capsys, tmp_path, "has no fit.json")


def test_vpc_adds_its_files_to_the_fit_folder_marker(popfit, tmp_path, capsys):
    folder = copy_fit(popfit, tmp_path)
    refused(["vpc", folder, "-o", tmp_path / "v.txt"], capsys, tmp_path, "unsupported figure format .txt")
    assert main(["vpc", str(folder), "--replicates", "20"]) == 0
    marker = json.loads((folder / ".cartkin-output").read_text())
    assert marker["command"] == "fit" and {"vpc.png", "vpc.csv", "fit.json"} <= set(marker["files"])


SIM = ["simulate", "--dose", "1e5", "--per-kg", "--days", "5", "--step", "1"]


def test_simulate_checks_its_paths_first_and_replaces_files_whole(tmp_path, capsys, monkeypatch):
    out = tmp_path / "x.csv"
    out.write_text("previous\n")
    refused([*SIM, "-o", out, "--plot", tmp_path / "x.txt"], capsys, tmp_path, "unsupported figure format .txt")
    refused([*SIM, "-o", tmp_path / "x.csv" / "sub.csv"], capsys, tmp_path, "is a file, not a folder")
    refused([*SIM, "-o", tmp_path], capsys, tmp_path, "is a folder")
    # a plot that fails leaves neither a new CSV nor a figure, and the previous CSV as it was
    import cartkin.report.plots as plots

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", "x.png")
    monkeypatch.setattr(plots, "simulation_figure", broken)
    refused([*SIM, "-o", out, "--plot", tmp_path / "x.png"], capsys, tmp_path, "No space left on device")
    assert out.read_text() == "previous\n" and sorted(os.listdir(tmp_path)) == ["x.csv"]
    monkeypatch.undo()
    # a figure name without an extension gets .png, and the message names the file written
    assert main([*SIM, "-o", str(out), "--plot", str(tmp_path / "fig")]) == 0
    assert f"figure -> {tmp_path / 'fig.png'}" in capsys.readouterr().out
    assert (tmp_path / "fig.png").is_file() and out.read_text().startswith("time,")


# --- tracebacks on reachable input become one-line errors ----------------------------------------------

def test_fix_that_the_model_cannot_be_solved_with_is_refused_before_fitting(tmp_path, capsys):
    data = write(tmp_path / "d.csv", GOOD)
    refused(["fit", data, "--model", "liu2022", "-o", tmp_path / "out", "--fix", "ka=1e12", "--no-plots"],
            capsys, tmp_path, "cannot be solved for subject 1 with --fix ka=1e+12")


def test_fit_option_mistakes(tmp_path, capsys):
    data = write(tmp_path / "d.csv", GOOD)
    refused(["fit", data, "--model", "liu2022", "-o", tmp_path / "out", "--estimate", "rTA0,rTA0"], capsys,
            tmp_path, "--estimate: rTA0 is named twice")
    refused(["fit", data, data, "--model", "liu2022", "-o", tmp_path / "out"], capsys, tmp_path,
            "is given twice")


@pytest.mark.parametrize("population, needle", [
    ('[population.covariate_table]\npath = "w.csv"\ncolumns = "weight"',
     "population.covariate_table.columns: must be a table"),
    ('[population.covariate_table]\npath = "latin1.csv"\ncolumns = {WT = "weight"}', "not UTF-8 text"),
    ('[population.variability]\nrho = 20\nkappa = 40\nk_exh = 30\n[population.correlation]\n'
     '"rho-kappa" = 0.9\n"rho-k_exh" = 0.9\n"kappa-k_exh" = -0.9',
     "population.correlation: the correlation matrix is not positive definite"),
])
def test_scenario_population_errors_name_the_key(tmp_path, capsys, population, needle):
    write(tmp_path / "w.csv", "weight\n70\n80\n")
    (tmp_path / "latin1.csv").write_bytes(b"weight\n70\n80\xe9\n")
    path = write(tmp_path / "s.toml", scenario_text(population=population))
    refused(["compare", path, "-o", tmp_path / "out", "--no-plots"], capsys, tmp_path, needle)


@pytest.mark.parametrize("argv, needle", [
    ([*SIM, "--days", "1e9"], "output times (--days 1e+09 / --step 1) need about"),
    (["simulate", "--days", "10", "--step", "1e-9"], "GB of memory"),
    (["compare", "-n", "1000000000000", "--no-plots"], "1,000,000,000,000 patients"),
])
def test_sizes_beyond_memory_are_refused_with_the_number(tmp_path, capsys, argv, needle):
    out = ["-o", tmp_path / "x.csv"] if argv[0] == "simulate" else ["-o", tmp_path / "out"]
    refused([*argv, *out], capsys, tmp_path, needle)


def test_huge_scenario_horizon_is_refused(tmp_path, capsys):
    path = write(tmp_path / "s.toml", scenario_text(horizon="1e9"))
    refused(["compare", path, "-o", tmp_path / "out", "--no-plots"], capsys, tmp_path, "output times to day 1e+09")


def test_regimen_split_checks_its_types():
    with pytest.raises(CartkinError, match=r"fractions\[0\] must be a number, got '0.5'"):
        cartkin.Regimen.split(1e6, ["0.5", 0.5], [0, 1])
    with pytest.raises(CartkinError, match="fractions must be a list of numbers"):
        cartkin.Regimen.split(1e6, 0.5, [0])
    with pytest.raises(CartkinError, match="infusion time must be a number"):
        cartkin.Infusion("1", dose_per_kg=1e5)
    assert [d.dose_per_kg for d in cartkin.Regimen.split(1e6, [0.25, 0.75], [0, 2])] == [2.5e5, 7.5e5]


def test_a_closed_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": str(Path(cartkin.__file__).parents[1])}
    proc = subprocess.run(f"{sys.executable} -m cartkin.cli models il10 | true; exit ${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_read_data_refuses_a_file_given_twice(tmp_path):
    data = write(tmp_path / "d.csv", GOOD)
    with pytest.raises(CartkinError, match="d.csv is given twice"):
        read_data([data, tmp_path / "." / "d.csv"], "liu2022")


def test_parameter_arrays_of_the_wrong_shape_or_empty_are_refused():
    model = cartkin.load_model("liu2022")
    times = [0.0, 10.0]
    with pytest.raises(CartkinError, match="must be 2-D"):
        cartkin.simulate_batch(model, None, times, np.ones((2, 3, len(model.parameter_names))), progress=False)
    with pytest.raises(CartkinError, match="1-D array"):
        cartkin.simulate_batch(model, None, times, {"rTA0": np.ones((2, 2))}, progress=False)
    with pytest.raises(CartkinError, match="no subjects"):
        cartkin.simulate_batch(model, None, times, {"rTA0": np.array([])}, progress=False)
    with pytest.raises(CartkinError, match="no subjects"):
        cartkin.simulate_batch(model, None, times, np.empty((0, len(model.parameter_names))), progress=False)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "8"])
def test_chunk_sizes_are_checked_in_one_place_for_every_chunked_loop(bad):
    from cartkin.execution import chunks_for
    with pytest.raises(cartkin.CartkinError, match="chunk_size must be a positive integer"):
        chunks_for(10, bad)
    assert chunks_for(5, np.int64(2)) == ([(0, 2), (2, 2), (4, 1)], [2, 2, 1])


def test_prior_from_a_population_fit_and_named_priors_together(popfit, tmp_path, capsys):
    """--prior FITDIR gives the parameters the population fit estimated their priors; NAME=MEDIAN:SD the
    others (the population fit of il10 on the Liu patients holds delta_E fixed; the MAP fits estimate it)."""
    fit, data = popfit
    info = json.loads((fit / "fit.json").read_text())
    typical = info["estimates"]["typical"]
    base = ["fit", str(data), "--model", "liu2022", *LIU_CLI, "--estimate", "rTA0,lTA0,eBp", "--starts", "1",
            "--no-plots", "--pooled-sigma"]
    out = tmp_path / "map"
    assert main(base + ["-o", str(out), "--prior", str(fit), "--prior", "eBp=10:1"]) == 0
    capsys.readouterr()
    with open(out / "estimates.csv") as fh:
        row = next(csv.DictReader(fh))
    # (estimates.csv writes 6 significant digits)
    assert float(row["rTA0_prior_median"]) == pytest.approx(typical["rTA0"], rel=1e-5)
    assert float(row["lTA0_prior_median"]) == pytest.approx(typical["lTA0"], rel=1e-5)
    assert float(row["eBp_prior_median"]) == 10.0 and float(row["eBp_prior_sd"]) == 1.0
    for bad, message in ((["--prior", str(fit), "--prior", "rTA0=1:1"], "given by the population fit"),
                         (["--prior", str(fit), "--prior", str(fit)], "one population fit folder at most")):
        target = tmp_path / "bad"
        assert main(base + ["-o", str(target)] + bad) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not target.exists()


def test_prior_from_a_population_fit_with_a_covariate_effect(popfit, tmp_path, capsys):
    """A parameter with a covariate effect in the population fit gets no prior from it (one prior would ignore
    the effect): refused in one line unless NAME=MEDIAN:SD gives it; the others still come from the fit."""
    def with_effect(info):
        info["covariate_effects"] = [{"parameter": "rTA0", "covariate": "nB0", "kind": "power", "reference": 1900.0}]
        info["estimates"]["fixed_effects"] = list(info["estimates"]["fixed_effects"]) + [0.3]
        info["estimates"]["coefficients"] = {"beta_rTA0_nB0": 0.3}
    fit = copy_fit(popfit, tmp_path, with_effect)
    data = popfit[1]
    base = ["fit", str(data), "--model", "liu2022", *LIU_CLI, "--estimate", "rTA0,lTA0", "--starts", "1",
            "--no-plots", "--pooled-sigma"]
    refused_to = tmp_path / "refused"
    assert main(base + ["-o", str(refused_to), "--prior", str(fit)]) == 2
    err = capsys.readouterr().err
    assert "covariate effects on rTA0 (covariate nB0)" in err and len(err.strip().splitlines()) == 1, err
    assert not refused_to.exists()
    out = tmp_path / "map"
    assert main(base + ["-o", str(out), "--prior", str(fit), "--prior", "rTA0=1.5:0.5"]) == 0
    capsys.readouterr()
    with open(out / "estimates.csv") as fh:
        row = next(csv.DictReader(fh))
    typical = json.loads((fit / "fit.json").read_text())["estimates"]["typical"]
    assert float(row["rTA0_prior_median"]) == 1.5
    assert float(row["lTA0_prior_median"]) == pytest.approx(typical["lTA0"], rel=1e-5)
