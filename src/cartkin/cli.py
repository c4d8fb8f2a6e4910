"""The `cartkin` command: parses arguments and calls the library; nothing else lives here.

    cartkin models [NAME]                      list models, or show one
    cartkin simulate --model il10 --dose 1e5 --per-kg --days 365 -o out.csv [--plot out.png]
    cartkin compare [SCENARIO.toml | NAME] -o OUTDIR  regimen comparison (default: the built-in meta10-19)
    cartkin scenario [NAME] [--list]           print a built-in scenario (default meta10-19), or list them
    cartkin calibrate TARGETS.toml -o OUTDIR  calibrate a virtual population to published figures
    cartkin fit DATA.csv --model liu2022 -o OUTDIR [--population [--vpc]]
    cartkin vpc FITDIR [--replicates 200] [--pred-corrected]   visual predictive check of a population fit
    cartkin export MODEL --sbml [-o FILE.xml]   the model as SBML (COPASI, tellurium, libRoadRunner)

Bad input ends with one line `cartkin: error: ...` on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

from .errors import CartkinError
from .stats.error_models import error_model_names
from .report.output import check_folder, check_writable, staged_files, staged_folder


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            # numerical warnings (overflow in a draw, a NaN in a summary) are not errors of the input: the
            # results say what could not be computed; keep stderr for the one-line errors
            warnings.simplefilter("ignore", RuntimeWarning)
            code = args.run(args) or 0
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader went away (`cartkin models | head -1`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except CartkinError as exc:
        print(f"cartkin: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cartkin: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cartkin: interrupted", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error every cartkin error has (argparse prints the usage block)."""

    def error(self, message: str):
        if "expected one argument" in message:
            message += " (a value that starts with '-' is written --option=VALUE, e.g. --dose=-1e5)"
        command = self.prog.removeprefix("cartkin").strip()
        print(f"cartkin: error: {command + ': ' if command else ''}{message}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__
    parser = _Parser(prog="cartkin", description="CAR T-cell cellular kinetics: simulate, "
                                     "compare regimens on virtual populations, fit kinetics data.")
    parser.add_argument("--version", action="version", version=f"cartkin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list the built-in models, or show one")
    p.add_argument("name", nargs="?", help="model to describe (states, parameters, observables)")
    p.set_defaults(run=_models)

    p = sub.add_parser("simulate", help="simulate one patient; every state and observable as CSV columns")
    p.add_argument("--model", default="il10", help="model name (default il10)")
    p.add_argument("--dose", type=float, action="append", default=None,
                   help="dose; cells/kg with --per-kg, else flat cells (needs body weight WT). Repeat with "
                        "--day for several infusions")
    p.add_argument("--day", type=float, action="append", default=None,
                   help="infusion day of each --dose (default: day 0)")
    p.add_argument("--per-kg", action="store_true", help="--dose is in cells per kg of body weight")
    p.add_argument("--days", type=float, default=365.0, help="horizon in days (default 365)")
    p.add_argument("--step", type=float, default=0.25, help="output interval in days (default 0.25)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter (repeatable or comma-separated)")
    _solver_options(p)
    p.add_argument("-o", "--output", default="simulation.csv", help="CSV file to write (default simulation.csv)")
    p.add_argument("--plot", help="also write a PNG figure of the observables")
    p.set_defaults(run=_simulate)

    p = sub.add_parser("compare", help="compare regimens on a virtual population (default: META 10-19)")
    p.add_argument("scenario", nargs="?", help="scenario TOML file or built-in scenario name (`cartkin scenario "
                   "--list`; default: meta10-19)")
    p.add_argument("-o", "--outdir", default="cartkin-results", help="output folder (default cartkin-results)")
    p.add_argument("-n", "--patients", type=int, help="override the number of virtual patients per arm")
    p.add_argument("--seed", type=int, help="override the population seed")
    p.add_argument("--replicates", type=int, help="override the number of trial replicates of the scenario's [trial]")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--threads", type=int, help="number of threads (default: all cores)")
    _cluster_options(p)
    p.set_defaults(run=_compare)

    p = sub.add_parser("calibrate", help="calibrate a virtual population to published trial figures")
    p.add_argument("targets", help="targets TOML file, or a shipped one: eliana, meta10-19")
    p.add_argument("-o", "--outdir", default="cartkin-calibration", help="output folder (default cartkin-calibration)")
    p.add_argument("--scenario", help="start from this scenario file instead of the targets file's "
                                      "(e.g. another calibration's calibrated.toml)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    _cluster_options(p)
    p.set_defaults(run=_calibrate)

    p = sub.add_parser("fit", help="fit each subject of a NONMEM-style data file by maximum likelihood")
    p.add_argument("data", nargs="+", help="CSV file(s): ID, TIME, DV, DVID [, MDV, EVID, AMT, CENS, LLOQ, covariates]")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("-o", "--outdir", default="cartkin-fit", help="output folder (default cartkin-fit)")
    p.add_argument("--map", action="append", default=[], metavar="FILECOL=STANDARD",
                   help="rename columns, e.g. --map time=TIME --map y=DV (repeatable or comma-separated)")
    p.add_argument("--dvid", default="", help="map DVID numbers to observables, e.g. 1=nTA,2=nB (2=skip leaves "
                   "DVID 2 out)")
    p.add_argument("--covariate", action="append", default=[], metavar="COLUMN=PARAMETER",
                   help="a data column giving a parameter per subject, e.g. Reg=nB0")
    p.add_argument("--lloq", type=float, help="values below this are censored at it")
    p.add_argument("--censor-floor", type=float, help="values <= this are censored at it (e.g. a detection floor)")
    p.add_argument("--prefix-ids", action="store_true",
                   help="name subjects FILE-ID (for several files numbering their patients from 1)")
    p.add_argument("--baseline", default="drop", choices=("drop", "zeros", "keep"),
                   help="pre-dose observations: drop all (default), drop only zeros, or keep")
    p.add_argument("--estimate", help="comma-separated parameters to estimate (default: the model's default set)")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a parameter (repeatable or comma-separated)")
    p.add_argument("--error", default="proportional", choices=error_model_names(), metavar="MODEL",
                   help="residual error model: proportional (default; additive on the log scale), additive, "
                   "combined1 (sd = a + b*f), combined2 (sd = sqrt(a^2 + b^2*f^2); also called combined)")
    p.add_argument("--sigma", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a residual SD, e.g. sigma_nTA=0.5 (repeatable or comma-separated)")
    p.add_argument("--pooled-sigma", action="store_true",
                   help="one residual SD per observable shared by all subjects (for sparse subjects)")
    p.add_argument("--profile", default="", metavar="NAMES",
                   help="comma-separated free parameters to give profile-likelihood intervals, e.g. rho,kappa")
    p.add_argument("--prior", action="append", default=[], metavar="NAME=MEDIAN:SD|FITDIR",
                   help="log-normal prior on an estimated parameter (SD of the log), e.g. rho=1.0:0.5 (repeatable, "
                   "comma-separated), and/or a population fit folder (typical values, sqrt of the omega "
                   "diagonal, for the parameters it estimated): the fit becomes maximum a posteriori")
    p.add_argument("--dose", type=float, help="dose in cells/kg on day 0 when the data have no dose records")
    p.add_argument("--starts", type=int, help="optimiser starts per subject (default 4); with --population, "
                   "independent SAEM runs, the best -2LL kept (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the multi-start draws (default 0)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    pop = p.add_argument_group("population fit (SAEM)")
    pop.add_argument("--population", action="store_true",
                     help="population fit: log-normal random effects on the --estimate parameters (SAEM)")
    pop.add_argument("--omega", choices=("diag", "full"), help="random-effect covariance (default diag)")
    pop.add_argument("--covariate-effect", action="append", default=[], metavar="PARAMETER=COVARIATE[:power|exp]",
                     help="covariate effect on a typical value, e.g. rTA0=nB0:power (repeatable)")
    pop.add_argument("--iterations", metavar="K1,K2", help="exploratory and smoothing iterations (default 300,150)")
    pop.add_argument("--chains", type=int, help="MCMC chains per subject (default: enough for 50 in all)")
    pop.add_argument("--vpc", action="store_true", help="also run a visual predictive check (vpc.png)")
    pop.add_argument("--replicates", type=int, help="VPC replicates with --vpc (default 200)")
    _cluster_options(p)
    p.set_defaults(run=_fit)

    p = sub.add_parser("vpc", help="visual predictive check of a population fit folder")
    p.add_argument("fitdir", help="output folder of cartkin fit --population")
    p.add_argument("--replicates", type=int, default=200, help="simulated replicates of the design (default 200)")
    p.add_argument("--pred-corrected", action="store_true", help="prediction-corrected VPC")
    p.add_argument("--bins", type=int, help="time bins per observable (default: from the number of observations)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulations (default 0)")
    p.add_argument("-o", "--output", help="figure to write (default FITDIR/vpc.png, or pcvpc.png)")
    _cluster_options(p)
    p.set_defaults(run=_vpc)

    p = sub.add_parser("export", help="write a model as SBML Level 3 (for COPASI, tellurium, libRoadRunner)")
    p.add_argument("name", metavar="MODEL", help="model name")
    p.add_argument("--sbml", action="store_true", help="SBML Level 3 Version 2 (the one format so far)")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter's default value (repeatable or comma-separated)")
    p.add_argument("--dose", type=float, help="include a day-0 dose in cells/kg as the initial condition "
                   "(other dosing is not exported)")
    p.set_defaults(run=_export)

    p = sub.add_parser("scenario", help="print a built-in scenario (TOML), to copy and edit; --list names them")
    p.add_argument("name", nargs="?", help="built-in scenario (default meta10-19)")
    p.add_argument("--list", action="store_true", help="list the built-in scenarios with a one-line description")
    p.set_defaults(run=_scenario)
    return parser


def _solver_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="auto", choices=("auto", "dopri5", "rodas"),
                   help="integrator (default auto: Dormand–Prince, Rodas once stiff)")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    p.add_argument("--atol", type=float, default=1e-9, help="absolute tolerance (default 1e-9)")


def _cluster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('Dask cluster (pip install "cartkin[distributed]"); same numbers as one process')
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the chunks on a running Dask cluster")
    g.add_argument("--cluster", metavar="local:N", help="start a local Dask cluster of N worker processes")


def _models(args) -> int:
    from .model import list_models, load_model
    if not args.name:
        for name in list_models():
            print(f"{name:12s} {load_model(name).description}")
        return 0
    model = load_model(args.name)
    print(f"{model.name}: {model.description}\n")
    print("states:")
    for s in model.states:
        print(f"  {s.name:10s} {s.unit:14s} {s.description}")
    print("\nparameters:")
    meanings = [q.description + (" (covariate)" if q.covariate else "") for q in model.parameter_info]
    width = max(len(m) for m in meanings + ["meaning"])
    print(f"  {'name':10s} {'default':>10s}  {'unit':22s} {'meaning':{width}s}  source")
    for q, meaning in zip(model.parameter_info, meanings):  # the source in full: it is the provenance
        print(f"  {q.name:10s} {q.default:10.4g}  {q.unit:22s} {meaning:{width}s}  {q.source}")
    print("\nobservables:")
    for o in model.observable_info:
        print(f"  {o.name:10s} {o.unit:14s} {o.description}")
    if model.dose:
        print(f"\ndose: adds {model.dose.per_kg} × (cells/kg) to {model.dose.target}")
    return 0


def _parse_params(items: list[str], flag: str = "--param") -> dict[str, float]:
    """NAME=VALUE items, repeated or comma-separated (`--fix a=1 --fix b=2` or `--fix a=1,b=2`)."""
    params = {}
    for item in (part.strip() for entry in items for part in entry.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CartkinError(f"{flag} {item!r}: expected NAME=VALUE")
        if name in params:
            raise CartkinError(f"{flag} {name} is given twice; give each parameter once")
        try:
            number = float(value)
        except ValueError:
            raise CartkinError(f"{flag} {item!r}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise CartkinError(f"{flag} {item!r}: value must be finite")
        params[name] = number
    return params


def _simulate(args) -> int:
    import numpy as np

    from .dosing import Infusion, Regimen
    from .model import load_model
    from .simulation import simulate

    output = Path(check_writable(args.output, "output file"))
    if output.is_dir():
        raise CartkinError(f"-o {args.output}: is a folder; give a CSV file name")
    plot = _figure_path(args.plot, "--plot") if args.plot is not None else None
    model = load_model(args.model)
    params = _parse_params(args.param)
    for name in params:
        model.parameter_index(name)
    if not (math.isfinite(args.days) and args.days > 0):
        raise CartkinError(f"--days must be a positive number of days, got {args.days}")
    if not (math.isfinite(args.step) and 0 < args.step <= args.days):
        raise CartkinError(f"--step must be > 0 and <= --days, got {args.step}")
    n_times = int(args.days / args.step) + 2
    _check_memory(3 * 8 * n_times * (len(model.state_names) + len(model.observables)),
                  f"{n_times:,} output times (--days {args.days:g} / --step {args.step:g})")
    doses = args.dose or []
    days = args.day or [0.0] * len(doses)
    if len(days) != len(doses):
        raise CartkinError(f"{len(doses)} --dose but {len(days)} --day: give one day per dose")
    infusions = [Infusion(d, dose_per_kg=x) if args.per_kg else Infusion(d, cells=x) for x, d in zip(doses, days)]
    regimen = Regimen(infusions)
    times = np.unique(np.append(np.arange(0.0, args.days, args.step), args.days))
    result = simulate(model, regimen, times, params, rtol=args.rtol, atol=args.atol, method=args.method)
    # the CSV and the figure replace their files together, or neither does
    with staged_files(*([output, plot] if plot else [output])) as temps:
        result.to_csv(temps[0])
        if plot:
            from .report.plots import simulation_figure
            simulation_figure(result, temps[1])
    print(f"{model.name}: {regimen.describe()}; {times.size} time points to day {args.days:g} -> {output}")
    if plot:
        print(f"figure -> {plot}")
    if not result.status.ok:
        print(f"cartkin: error: the solver failed: {result.status.message} (later rows are empty)", file=sys.stderr)
        return 1
    return 0


def _memory_limit() -> int:
    """Bytes a run may plan to use: 80% of the physical memory (8 GB when it cannot be read)."""
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _check_memory(nbytes: float, what: str) -> None:
    """Refuse, before allocating anything, a run whose arrays would not fit in memory."""
    limit = _memory_limit()
    if nbytes > limit:
        raise CartkinError(f"{what} need about {nbytes / 2**30:,.1f} GB of memory, more than the "
                           f"{limit / 2**30:,.1f} GB available; ask for fewer")


FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "tif", "tiff", "eps", "ps", "webp")


def _figure_path(text: str, flag: str) -> Path:
    """A figure file to write, checked before any work: a known format (a name without one gets .png)."""
    path = check_writable(text, "figure")
    if path.is_dir():
        raise CartkinError(f"{flag} {text}: is a folder; give a file name such as {path / 'figure.png'}")
    suffix = path.suffix.lower().lstrip(".")
    if not suffix:
        return path.with_name(path.name + ".png")
    if suffix not in FIGURE_FORMATS:
        raise CartkinError(f"{flag} {text}: unsupported figure format .{suffix} (use one of "
                           f"{', '.join('.' + f for f in FIGURE_FORMATS)})")
    return path


def _compare(args) -> int:
    import dataclasses

    from .scenario import compare, default_scenario, load_scenario

    check_folder(args.outdir, "compare")
    scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    if args.replicates is not None:
        if scenario.trial is None:
            raise CartkinError(f"--replicates: the scenario {scenario.name!r} has no [trial] table (size, replicates)")
        if args.replicates < 1:
            raise CartkinError(f"--replicates must be >= 1, got {args.replicates}")
        scenario = dataclasses.replace(scenario, trial=dataclasses.replace(scenario.trial, replicates=args.replicates))
    population = scenario.population
    if args.patients is not None:
        if args.patients < 1:
            raise CartkinError(f"--patients must be >= 1, got {args.patients}")
        population = dataclasses.replace(population, n=args.patients)
    if args.seed is not None:
        if args.seed < 0:
            raise CartkinError(f"--seed must be >= 0, got {args.seed}")
        population = dataclasses.replace(population, seed=args.seed)
    scenario = dataclasses.replace(scenario, population=population)
    if args.threads is not None:
        import numba
        if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
            raise CartkinError(f"--threads must be between 1 and {numba.config.NUMBA_NUM_THREADS}")
        numba.set_num_threads(args.threads)
    model = scenario.model
    h = scenario.horizon
    n_times = int(min(28.0, h) / 0.25) + int(max(0.0, h - 28.0)) + 2  # the grid of Scenario.times()
    n = scenario.population.n
    width = len(model.state_names) + len(model.observables)
    _check_memory(8 * (n * len(scenario.arms) * 40 + 2 * min(n, 16_384) * n_times * width),
                  f"{len(scenario.arms)} arms x {n:,} patients and {n_times:,} output times to day {h:g}")
    if scenario.trial is not None:
        trial_n = scenario.trial.size * scenario.trial.replicates
        from .scenario.trials import CHUNK
        _check_memory(8 * (trial_n * len(scenario.arms) * 40 + 2 * min(trial_n, CHUNK) * n_times * width),
                      f"{scenario.trial.replicates:,} trials x {scenario.trial.size:,} patients x "
                      f"{len(scenario.arms)} arms")
    start = time.perf_counter()
    print(f"{scenario.name}: {len(scenario.arms)} arms x {scenario.population.n} virtual patients, "
          f"model {scenario.model.name}, {scenario.horizon:g} days"
          + (f"; {scenario.trial.replicates} trials of {scenario.trial.size}" if scenario.trial else ""), flush=True)
    from .execution import connect
    with connect(args.scheduler, args.cluster) as client:
        result = compare(scenario, client=client)
    from . import report
    outdir = Path(args.outdir)
    with staged_folder(outdir, "compare") as stage:
        files = report.write(result, stage)
        if not args.no_plots:
            files += report.plot(result, stage)
    print(result.summary)
    if result.trials is not None:
        print()
        print(result.trials.table())
    print(f"\n{len(files)} files in {outdir}/ ({', '.join(f.name for f in files)}); "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _calibrate(args) -> int:
    from .calibration import Targets, calibrate

    check_folder(args.outdir, "calibrate")
    targets = Targets.from_toml(args.targets, scenario=args.scenario)
    start = time.perf_counter()
    print(f"{targets.name}: {len(targets.targets)} targets, {len(targets.arms)} arms, "
          f"{len(targets.moving)} calibrated parameters", flush=True)
    from .execution import connect
    with connect(args.scheduler, args.cluster) as client:
        result = calibrate(targets, client=client, progress=lambda text: print(text, flush=True))
    from . import report
    outdir = Path(args.outdir)
    with staged_folder(outdir, "calibrate") as stage:
        files = report.write(result, stage)
        if not args.no_plots:
            files += report.plot(result, stage)
    print(result.summary_text())
    print(f"\n{len(files)} files in {outdir}/ ({', '.join(f.name for f in files)}); "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        for part in filter(None, (x.strip() for x in item.split(","))):
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise CartkinError(f"{flag} {part!r}: expected A=B")
            if key in out:
                raise CartkinError(f"{flag}: {key} is given twice ({key}={out[key]} and {key}={value}); give each "
                                   f"key once")
            out[key] = value
    return out


def _fit(args) -> int:
    from .dosing import Regimen
    from .data import read_data
    from .estimation import fit
    from .model import load_model

    model = load_model(args.model)
    _check_fit_options(args)
    check_folder(args.outdir, "fit")
    column_map = _pairs(args.map, "--map")
    dvid_map = _pairs([args.dvid], "--dvid") if args.dvid else {}
    covariates = _pairs(args.covariate, "--covariate")
    data = read_data(args.data, model, column_map=column_map, dvid_map=dvid_map, covariates=covariates,
                     lloq=args.lloq, censor_floor=args.censor_floor, prefix_ids=args.prefix_ids,
                     baseline=args.baseline)
    estimate = [x.strip() for x in args.estimate.split(",") if x.strip()] if args.estimate else None
    for name in estimate or ():
        if estimate.count(name) > 1:
            raise CartkinError(f"--estimate: {name} is named twice; name each parameter once")
    fix = _parse_params(args.fix, "--fix")
    sigma = _parse_params(args.sigma, "--sigma")
    regimen = None
    if args.dose is not None:
        regimen = Regimen.single(dose_per_kg=args.dose)
    print(data.summary(), flush=True)
    from . import report
    if args.population:
        from .estimation.population.fit_file import file_sha256
        source = {"files": [str(Path(f).resolve()) for f in args.data],
                  "sha256": [file_sha256(f) for f in args.data],
                  "options": {"column_map": column_map, "dvid_map": dvid_map, "covariates": covariates,
                              "lloq": args.lloq, "censor_floor": args.censor_floor, "prefix_ids": args.prefix_ids,
                              "baseline": args.baseline}}
        return _fit_population(args, model, data, estimate, fix, regimen, source)
    from .execution import connect
    priors = _priors(args.prior, model, estimate, fix)
    with connect(args.scheduler, args.cluster) as client:
        result = fit(model, data, estimate=estimate, fix=fix, error=args.error, sigma=sigma, regimen=regimen,
                     starts=4 if args.starts is None else args.starts, seed=args.seed,
                     pooled_sigma=args.pooled_sigma, profile=args.profile, priors=priors, client=client)
    with staged_folder(args.outdir, "fit") as stage:
        files = report.write(result, stage)
        if not args.no_plots:
            files += report.plot(result, stage)
    print(result.estimates_table())
    n_bad = sum(not f.converged for f in result.fits)
    if n_bad:
        print(f"\n{n_bad} of {len(result.fits)} subjects not converged or not identifiable: see the warnings column "
              f"in estimates.csv; fix or drop parameters (--fix, --estimate)")
    print(f"\n{len(files)} files in {args.outdir}/ ({', '.join(Path(f).name for f in files)})")
    return 0


def _check_fit_options(args) -> None:
    """Refuse, before any fitting, options that do not go together or are out of range."""
    for flag, value, low in (("--seed", args.seed, 0), ("--starts", args.starts, 1), ("--chains", args.chains, 1),
                             ("--replicates", args.replicates, 20)):
        if value is not None and value < low:
            raise CartkinError(f"{flag} must be >= {low}, got {value}")
    _population_only(args)


def _population_only(args) -> None:
    """Refuse population options on an individual fit, and individual-only options on a population fit."""
    given = [flag for flag, value in (("--omega", args.omega), ("--covariate-effect", args.covariate_effect),
                                      ("--iterations", args.iterations), ("--chains", args.chains),
                                      ("--vpc", args.vpc), ("--replicates", args.replicates)) if value]
    if given and not args.population:
        raise CartkinError(f"{given[0]} needs --population")
    if args.population:
        for flag, value in (("--sigma", args.sigma), ("--pooled-sigma", args.pooled_sigma),
                            ("--profile", getattr(args, "profile", "")), ("--prior", getattr(args, "prior", []))):
            if value:
                raise CartkinError(f"{flag} is for individual fits; a population fit estimates the residual error")


def _priors(items, model, estimate, fix):
    """--prior values: NAME=MEDIAN:SD items and/or one population fit folder (its typical values and ω's
    for the parameters it estimated, except those with a covariate effect; NAME=MEDIAN:SD items give the
    others theirs)."""
    from .estimation.population.fit_file import load_fit, priors_from_fit
    from .stats.priors import parse_prior_text
    if not items:
        return None
    folders = [item for item in items if "=" not in item]
    if len(folders) > 1:
        raise CartkinError(f"--prior: one population fit folder at most, got {len(folders)} ({', '.join(folders)})")
    explicit = parse_prior_text([item for item in items if "=" in item])
    if not folders:
        return explicit
    loaded = load_fit(folders[0], with_data=False)
    # a parameter with a covariate effect in the population fit takes its NAME=MEDIAN:SD prior (priors_from_fit
    # refuses it otherwise: one prior cannot carry the effect)
    with_effects = {e.parameter for e in loaded.effects} & set(explicit)
    names = [n for n in model.estimated(estimate, fix) if n not in with_effects]
    from_fit = priors_from_fit(loaded, names) if names else {}
    both = sorted(set(from_fit) & set(explicit))
    if both:
        raise CartkinError(f"--prior {', '.join(both)}: given by the population fit {folders[0]} and as "
                           f"NAME=MEDIAN:SD; give it once")
    return {**from_fit, **explicit}


def _fit_population(args, model, data, estimate, fix, regimen, source) -> int:
    from . import report
    from .estimation import fit_population, vpc

    iterations = (300, 150)
    if args.iterations:
        parts = args.iterations.split(",")
        try:
            iterations = tuple(int(x) for x in parts)
        except ValueError:
            raise CartkinError(f"--iterations {args.iterations!r}: expected two integers K1,K2") from None
        if len(iterations) != 2:
            raise CartkinError(f"--iterations {args.iterations!r}: expected two integers K1,K2")
    from .execution import connect
    start = time.perf_counter()
    outdir = Path(args.outdir)
    with connect(args.scheduler, args.cluster) as client:
        result = fit_population(model, data, estimate=estimate, fix=fix, error=args.error,
                                covariate_effects=args.covariate_effect, omega=args.omega or "diag",
                                iterations=iterations, chains=args.chains, seed=args.seed, regimen=regimen,
                                starts=1 if args.starts is None else args.starts, data_source=source, progress=None,
                                client=client)
        with staged_folder(outdir, "fit") as stage:
            files = report.write(result, stage)
            if not args.no_plots:
                files += report.plot(result, stage)
            print(result)
            if result.settings["starts"] > 1:
                print(f"-2LL of the {result.settings['starts']} starts: "
                      + ", ".join(f"{x:.2f}" for x in result.settings["start_minus2loglik"])
                      + f" (kept start {result.settings['best_start']})")
            if args.vpc:
                check = vpc(result, replicates=args.replicates or 200, seed=args.seed, client=client)
                files += report.write(check, stage) + report.plot(check, stage)
    print(f"\n{len(files)} files in {outdir}/ ({', '.join(Path(f).name for f in files)}); "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _vpc(args) -> int:
    from . import report
    from .estimation import load_fit, vpc
    from .report.vpc_plots import vpc_figure

    start = time.perf_counter()
    if args.seed < 0:
        raise CartkinError(f"--seed must be >= 0, got {args.seed}")
    folder = Path(args.fitdir)
    figure = _figure_path(args.output, "-o") if args.output else \
        folder / ("pcvpc.png" if args.pred_corrected else "vpc.png")
    fit = load_fit(args.fitdir)
    from .execution import connect
    with connect(args.scheduler, args.cluster) as client:
        check = vpc(fit, replicates=args.replicates, prediction_corrected=args.pred_corrected, seed=args.seed,
                    n_bins=args.bins, client=client)
    with staged_folder(figure.parent, "vpc", add=True) as stage:
        table = figure.parent / report.write(check, stage)[0].name
        vpc_figure(check, stage / figure.name)
    failed = f"; {check.failed} simulated subjects could not be solved" if check.failed else ""
    print(f"{check.model_name}: {'prediction-corrected ' if args.pred_corrected else ''}VPC, {args.replicates} "
          f"replicates of {fit.pm.data.n_subjects} subjects{failed} -> {figure}, {table} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


def _export(args) -> int:
    from .model import load_model

    if not args.sbml:
        raise CartkinError("choose an export format: --sbml")
    model = load_model(args.name)
    params = _parse_params(args.param)
    if params:
        model = model.with_defaults(**params)
    from .model.export import to_sbml
    text = to_sbml(model, dose_per_kg=args.dose)
    if args.output is not None:
        if Path(check_writable(args.output, "output file")).is_dir():
            raise CartkinError(f"-o {args.output}: is a folder; give a file name")
        with staged_files(args.output) as temps:
            temps[0].write_text(text, encoding="utf-8")
        print(f"{model.name}: SBML Level 3 Version 2 -> {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _scenario(args) -> int:
    from .scenario.spec import DEFAULT_SCENARIO, builtin_scenarios, builtin_text
    if args.list:
        if args.name:
            raise CartkinError("scenario: give a NAME or --list, not both")
        scenarios = builtin_scenarios()
        width = max(len(name) for name, _ in scenarios)
        for name, description in scenarios:
            print(f"{name:{width}s}  {description}" + ("  (default)" if name == DEFAULT_SCENARIO else ""))
        return 0
    sys.stdout.write(builtin_text(args.name or DEFAULT_SCENARIO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
