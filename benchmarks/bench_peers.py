"""Benchmark: cartkin against peer ODE tools on the same il10 problem, plus CLI start-up time.

Run by hand (not in tests):

    pip install -e ".[bench]"          # libroadrunner, python-libsbml (optional peers)
    pip install numbalsoda             # optional; builds from source and needs gfortran
    python benchmarks/bench_peers.py [--subjects 2000] [--reference-subjects 20]

Same model, tolerances, output times and virtual patients for every tool: il10, log-normal parameters
around the defaults (bench_simulate.population), 365 days, 30 output times, one day-0 dose of 1e5
cells/kg. For the peers the dose is the initial value jump cartkin applies at day 0
(N(0) += f_blood × 1e5 / 70000; libRoadRunner gets it from the SBML export's initial assignment), and
the script checks that cartkin solving that initial-value problem gives the same answer as cartkin
with the dose as an event. Peers: scipy solve_ivp (LSODA; BDF with the generated analytic Jacobian)
calling numba-compiled generated code, libRoadRunner on `cartkin.to_sbml(model, dose_per_kg=1e5)` (CVODE),
and numbalsoda (LSODA in compiled code, called from a numba loop) when installed.

Each row: time per subject (best of --repeats for the fast tools), max relative error against scipy
Radau (rtol 1e-12) on the first --reference-subjects subjects, relative to max(|y|, atol/rtol) as in
tests/test_solvers.py (day 0 excluded: cartkin reports the pre-dose sample there), and the ratio of
the peer's time to cartkin's on 1 thread, at the same tolerances and at matched accuracy (the cheapest
cartkin run at least as accurate as the peer). A subject a tool fails to solve is counted (with each
tool's own step limit) and left out of its error. Prints a Markdown table to paste into README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_simulate import population  # noqa: E402  (same virtual patients as the other benchmark)
from reference import reference_solution  # noqa: E402  (independent sympy.lambdify + Radau reference)

DOSE = 1e5          # cells/kg on day 0
HORIZON = 365.0
N_TIMES = 30


# ---------------------------------------------------------------------------------------------
# start-up
def cli_command() -> list[str]:
    """The installed `cartkin` script beside this Python (not a version-manager shim), else -m."""
    beside = Path(sys.executable).parent / "cartkin"
    exe = str(beside) if beside.exists() else shutil.which("cartkin")
    return [exe] if exe else [sys.executable, "-m", "cartkin.cli"]


def wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def startup(repeats: int) -> dict:
    """`cartkin simulate` from a new process: empty caches, then warm caches (median of repeats).

    Both CARTKIN_CACHE_DIR (generated modules and their numba cache) and NUMBA_CACHE_DIR (numba's cache
    of cartkin's own compiled functions) point to fresh folders, so "cold" compiles everything.
    """
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CARTKIN_CACHE_DIR=os.path.join(tmp, "cartkin"),
                   NUMBA_CACHE_DIR=os.path.join(tmp, "numba"))
        cmd = cli_command() + ["simulate", "--model", "il10", "--dose", str(DOSE), "--per-kg",
                               "--days", str(HORIZON), "-o", os.path.join(tmp, "out.csv")]
        cold = wall(cmd, env)
        warm = [wall(cmd, env) for _ in range(repeats)]
        imp = [wall([sys.executable, "-c", "import cartkin"], env) for _ in range(repeats)]
        bare = [wall([sys.executable, "-c", "pass"], env) for _ in range(repeats)]
    return {"cold": cold, "warm": statistics.median(warm), "import": statistics.median(imp),
            "python": statistics.median(bare)}


# ---------------------------------------------------------------------------------------------
# the problem, and each tool solving it: each returns states (subjects × times × states)
def initial_states(mod, model, P: np.ndarray) -> np.ndarray:
    """Initial state with the day-0 dose added to the dose target (what cartkin does at t = 0)."""
    Y0 = np.empty((P.shape[0], model.n_states()))
    target = model.state_index(model.dose.target)
    for i, p in enumerate(P):
        mod.initial(p, Y0[i])
        Y0[i, target] += DOSE * mod.dose_scale(p)
    return Y0


# Each runner returns (states: subjects × times × states, NaN for failed subjects; mean (RHS, Jacobian)
# evaluations per subject or None; number of failed subjects).
def run_cartkin(model, P, times, rtol, atol):
    import cartkin
    from cartkin.solve.common import N_JAC, N_RHS
    res = cartkin.simulate_batch(model, cartkin.Regimen.single(dose_per_kg=DOSE), times, P, rtol=rtol,
                                 atol=atol, progress=False)
    out = res.states.copy()
    out[~res.ok] = np.nan
    return out, (res.counters[:, N_RHS].mean(), res.counters[:, N_JAC].mean()), int((~res.ok).sum())


def scipy_functions(mod, n: int):
    """njit wrappers returning new arrays, as a user would hand them to solve_ivp."""
    import numba
    rhs, jac = mod.rhs, mod.jac

    @numba.njit
    def f(t, y, p):
        out = np.empty(n)
        rhs(t, y, p, 0.0, out)
        return out

    @numba.njit
    def J(t, y, p):
        out = np.empty((n, n))
        jac(t, y, p, 0.0, out)
        return out
    return f, J


def run_scipy(method: str, funcs, Y0, P, times, rtol, atol):
    from scipy.integrate import solve_ivp
    f, J = funcs
    out = np.empty((P.shape[0], times.size, Y0.shape[1]))
    evals, failed = np.zeros(2), 0
    for i in range(P.shape[0]):
        sol = solve_ivp(f, (times[0], times[-1]), Y0[i], method=method, t_eval=times, rtol=rtol, atol=atol,
                        jac=J, args=(P[i],))
        if sol.success:
            out[i] = sol.y.T
        else:
            out[i], failed = np.nan, failed + 1
        evals += (sol.nfev, sol.njev)
    return out, tuple(evals / P.shape[0]), failed


def roadrunner_setup(model):
    import roadrunner

    import cartkin
    roadrunner.Logger.setLevel(roadrunner.Logger.LOG_FATAL)  # failures are counted, not printed
    t0 = time.perf_counter()
    r = roadrunner.RoadRunner(cartkin.to_sbml(model, dose_per_kg=DOSE))
    load = time.perf_counter() - t0
    r.timeCourseSelections = [f"[{s}]" for s in model.state_names]
    ids = list(r.model.getGlobalParameterIds())
    index = np.array([ids.index(q) for q in model.parameter_names], dtype=np.int32)
    return r, index, load


def run_roadrunner(rr, P, times, rtol, atol):
    """Per subject: set the parameters, reset (re-evaluates the initial assignments), simulate.

    CVODE (BDF) with roadrunner's other defaults (at most 20,000 steps per output interval)."""
    r, index, _ = rr
    r.integrator.relative_tolerance = rtol
    r.integrator.absolute_tolerance = atol
    out = np.empty((P.shape[0], times.size, len(r.timeCourseSelections)))
    failed = 0
    for i in range(P.shape[0]):
        r.model.setGlobalParameterValues(index, P[i])
        r.reset()
        try:
            out[i] = r.simulate(times[0], times[-1], times.size)
        except RuntimeError:  # CVODE gave up (CV_TOO_MUCH_WORK, step size underflow)
            out[i], failed = np.nan, failed + 1
    return out, None, failed


def numbalsoda_setup(mod, n: int, npar: int):
    """A cfunc RHS (the generated code) and a numba loop over subjects calling numbalsoda.lsoda
    (its default step limit, 10,000 per output interval)."""
    import numba
    from numba import carray, cfunc
    from numbalsoda import lsoda, lsoda_sig
    rhs = mod.rhs

    @cfunc(lsoda_sig)
    def f(t, u, du, p):
        rhs(t, carray(u, (n,)), carray(p, (npar,)), 0.0, carray(du, (n,)))

    @numba.njit
    def loop(address, Y0, P, times, rtol, atol, out):
        failed = 0
        for i in range(P.shape[0]):
            usol, success = lsoda(address, Y0[i].copy(), times, data=P[i].copy(), rtol=rtol, atol=atol)
            if success:
                out[i] = usol
            else:
                out[i] = np.nan
                failed += 1
        return failed
    return f.address, loop


def run_numbalsoda(nbl, Y0, P, times, rtol, atol):
    address, loop = nbl
    out = np.empty((P.shape[0], times.size, Y0.shape[1]))
    failed = loop(address, Y0, P, times, rtol, atol, out)
    return out, None, failed


def timed(fn, n: int, repeats: int):
    """(result, seconds per subject), best of `repeats` runs."""
    best, result = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best / n


def max_error(y: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> float:
    """Max |y - ref| / max(|ref|, atol/rtol) over subjects, times after day 0 and states (failed
    subjects, NaN in y, are left out: they are counted separately)."""
    y, ref = y[:, 1:], ref[:, 1:]
    return float(np.nanmax(np.abs(y - ref) / np.maximum(np.abs(ref), atol / rtol)))


def ratio(x: float) -> str:
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×" if x >= 1 else f"{x:.2f}×"


def revision() -> str:
    """The checkout measured (`-dirty`: with uncommitted changes)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.1f} ms"


# ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=2000, help="subjects for cartkin (default 2000)")
    ap.add_argument("--scipy-subjects", type=int, default=40)
    ap.add_argument("--roadrunner-subjects", type=int, default=200)
    ap.add_argument("--numbalsoda-subjects", type=int, default=500)
    ap.add_argument("--reference-subjects", type=int, default=20, help="subjects checked against Radau")
    ap.add_argument("--tolerances", default="1e-6:1e-9,1e-8:1e-11", help="rtol:atol pairs (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-startup", action="store_true", help="skip the CLI start-up measurement")
    args = ap.parse_args()
    tolerances = [tuple(float(x) for x in pair.split(":")) for pair in args.tolerances.split(",")]
    load_before = os.getloadavg()

    start = None if args.no_startup else startup(args.repeats)

    import numba
    import scipy

    import cartkin
    from cartkin.codegen import compile_model

    model = cartkin.load_model("il10")
    mod = compile_model(model)
    times = np.linspace(0.0, HORIZON, N_TIMES)
    n_ref = args.reference_subjects
    P = population(model, max(args.subjects, args.scipy_subjects, args.roadrunner_subjects,
                              args.numbalsoda_subjects, n_ref))
    Y0 = initial_states(mod, model, P)
    threads_all = numba.config.NUMBA_NUM_THREADS

    print(f"reference: scipy Radau rtol 1e-12 on {n_ref} subjects ...", flush=True)
    t0 = time.perf_counter()
    ref = np.array([reference_solution(model, dict(zip(model.parameter_names, p)), times, [(0.0, DOSE)])
                    for p in P[:n_ref]])
    print(f"  {time.perf_counter() - t0:.0f} s", flush=True)

    # The dose as an initial-value jump (what the peers solve) against the dose as a cartkin event.
    n_check = min(50, P.shape[0])
    ivp = dataclasses.replace(model, name="il10_day0_dose", dose=None, initial={
        **model.initial, model.dose.target: DOSE * model.dose.per_kg})
    y_event, _, _ = run_cartkin(model, P[:n_check], times, 1e-10, 1e-13)
    y_ivp = cartkin.simulate_batch(ivp, None, times, P[:n_check], rtol=1e-10, atol=1e-13, progress=False).states
    dose_check = max_error(y_ivp, y_event, 1e-10, 1e-13)

    one_off = {}
    t0 = time.perf_counter()
    scipy_funcs = scipy_functions(mod, model.n_states())
    run_scipy("LSODA", scipy_funcs, Y0[:1], P[:1], times, 1e-6, 1e-9)
    one_off["scipy"] = time.perf_counter() - t0
    peers = {"scipy solve_ivp LSODA (numba RHS + Jacobian)": "LSODA",
             "scipy solve_ivp BDF (numba RHS + Jacobian)": "BDF"}
    notes = []
    try:
        rr = roadrunner_setup(model)
        import roadrunner
        one_off["roadrunner"] = rr[2]
        peers[f"libRoadRunner {roadrunner.__version__} (CVODE, SBML export)"] = "roadrunner"
    except ImportError:
        notes.append("libRoadRunner not installed (pip install libroadrunner): skipped")
    try:
        t0 = time.perf_counter()
        nbl = numbalsoda_setup(mod, model.n_states(), model.n_parameters())
        run_numbalsoda(nbl, Y0[:1], P[:1], times, 1e-6, 1e-9)
        one_off["numbalsoda"] = time.perf_counter() - t0
        peers["numbalsoda 0.3 (LSODA, numba loop, cfunc RHS)"] = "numbalsoda"
    except ImportError:
        notes.append("numbalsoda not installed (pip install numbalsoda; it builds from source and needs a "
                     "Fortran compiler such as gfortran): skipped")

    floor = max(a / r for r, a in tolerances)  # common error floor: errors comparable across tolerances
    rows = []  # (tool, rtol, atol, n, s per subject, error, error at the common floor, evaluations, failed)
    for rtol, atol in tolerances:
        run_cartkin(model, P[:10], times, rtol, atol)  # load / warm
        for threads in sorted({1, threads_all}):
            numba.set_num_threads(threads)
            (y, evals, failed), sec = timed(lambda: run_cartkin(model, P[:args.subjects], times, rtol, atol),
                                    args.subjects, args.repeats)
            rows.append((f"cartkin simulate_batch, {threads} thread{'s' if threads > 1 else ''}", rtol, atol,
                         args.subjects, sec, max_error(y[:n_ref], ref, rtol, atol),
                         max_error(y[:n_ref], ref, 1.0, floor), evals, failed))
        numba.set_num_threads(threads_all)
        for label, kind in peers.items():
            print(f"{label} at rtol {rtol:g} ...", flush=True)
            if kind in ("LSODA", "BDF"):
                n = args.scipy_subjects
                (y, evals, failed), sec = timed(lambda: run_scipy(kind, scipy_funcs, Y0[:n], P[:n], times, rtol, atol), n, 1)
            elif kind == "roadrunner":
                n = args.roadrunner_subjects
                (y, evals, failed), sec = timed(lambda: run_roadrunner(rr, P[:n], times, rtol, atol), n, args.repeats)
            else:
                n = args.numbalsoda_subjects
                (y, evals, failed), sec = timed(lambda: run_numbalsoda(nbl, Y0[:n], P[:n], times, rtol, atol), n,
                                        args.repeats)
            rows.append((label, rtol, atol, n, sec, max_error(y[:n_ref], ref, rtol, atol),
                         max_error(y[:n_ref], ref, 1.0, floor), evals, failed))

    def cartkin_1thread(rtol):
        return next(r for r in rows if r[0].startswith("cartkin") and r[0].endswith("1 thread") and r[1] == rtol)

    def matched(err):
        """Cheapest cartkin 1-thread run at least as accurate (at the common floor) as `err`."""
        ok = [r for r in rows if r[0].endswith("1 thread") and r[6] <= err and r[8] == 0]
        return min(ok, key=lambda r: r[4]) if ok else None

    load_after = os.getloadavg()
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}; Python {platform.python_version()}, numpy {np.__version__}, "
          f"scipy {scipy.__version__}, numba {numba.__version__}, cartkin {cartkin.__version__} ({revision()}); "
          f"date {time.strftime('%Y-%m-%d')}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"il10, {HORIZON:g} days, {N_TIMES} output times, one dose {DOSE:g} cells/kg on day 0; log-normal "
          f"virtual patients (bench_simulate.population); error vs scipy Radau rtol 1e-12 on {n_ref} subjects, "
          f"relative to max(|y|, atol/rtol), all 8 states, day 0 and failed subjects excluded; matched accuracy compares errors "
          f"relative to max(|y|, {floor:g})")
    print(f"Dose as an initial value vs as a cartkin event (cartkin, rtol 1e-10): max difference {dose_check:.1e}")
    print("One-off costs, not in the times: " + ", ".join(
        f"{k} {v:.2f} s" for k, v in {"scipy (numba wrappers)": one_off.get("scipy"),
                                       "libRoadRunner SBML load + JIT": one_off.get("roadrunner"),
                                       "numbalsoda cfunc + loop compile": one_off.get("numbalsoda")}.items()
        if v is not None))
    for note in notes:
        print(note)
    if start:
        print(f"Start-up, `cartkin simulate --model il10 --dose 1e5 --per-kg` in a new process: "
              f"{start['warm']:.2f} s with a warm cache (python alone {start['python']:.2f} s, "
              f"`import cartkin` {start['import']:.2f} s), {start['cold']:.1f} s with empty caches")
    print()
    print("| tool | rtol / atol | subjects (failed) | time per subject | f (J) evals | max rel. error "
          "| × cartkin (1 thread), same tol. | × cartkin at matched accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for tool, rtol, atol, n, sec, err, err_common, evals, failed in rows:
        base = cartkin_1thread(rtol)[4]
        if tool.startswith("cartkin"):
            same, acc = f"{sec / base:.2f}", ""
        else:
            m = matched(err_common)
            same = ratio(sec / base)
            acc = f"{ratio(sec / m[4])} (vs rtol {m[1]:g})" if m else "— (more accurate than every cartkin run)"
        ev = f"{evals[0]:.0f} ({evals[1]:.0f})" if evals else "n/a"
        print(f"| {tool} | {rtol:g} / {atol:g} | {n} ({failed}) | {fmt_time(sec)} | {ev} | {err:.1e} | {same} "
              f"| {acc} |")


if __name__ == "__main__":
    main()
