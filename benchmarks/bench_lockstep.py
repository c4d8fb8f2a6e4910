"""Benchmark: the lockstep kernel (cartkin.solve.lanes) against the scalar kernel, and peers in the same run.

Run by hand (not in tests):
    python benchmarks/bench_lockstep.py [--parts simulate,asm,population,saem] [--subjects 2000] [--repeats 3]

simulate: µs per one-year subject (365 days, 30 output times, --method auto or dopri5) of `simulate_batch` on one numba
    thread, scalar kernel (`Solver(lanes=1)`) against the lockstep kernel for each --lanes (in auto mode
    twice: with the subjects that turn stiff finished on their lane by the scalar Rodas4,
    `Solver(stiff_lanes=False)`, and in the W-lane Rodas4 pool, `True`), on the calling thread's CPU clock
    (`time.thread_time`: on a shared machine the wall time also counts the waits for a core), median of
    --repeats runs alternating the kernels; scipy `solve_ivp(LSODA)` with the same numba-compiled RHS and
    Jacobian on --scipy-subjects of them in the same run. Each lockstep run is checked against the scalar
    one: same status, step counters and outputs (must be equal bit for bit). Lane occupancy (lane-steps that
    advanced a subject / lane-steps attempted, for the Dormand–Prince lanes and the Rodas4 pool) and the
    lockstep steps per subject come from one call of the lane kernel on all subjects (its `usage` counters).
    Subjects: bench_models.parameters (il10:
    bench_simulate's virtual patients with 1e5 cells/kg; liu2022, stein2019: CV 20% around the defaults).
asm: the packed and scalar double-precision arithmetic instructions in the assembly of each model's W-lane
    right-hand side, Jacobian, LU factorisation and solve, Rodas4 pool step and lockstep kernel as they
    compile (numba's `inspect_asm`), and the vector registers they use; numba keeps no assembly for code loaded from its cache, so run this part with an
    empty cache folder (CARTKIN_CACHE_DIR=$(mktemp -d)).
population: `simulate_summaries` of --population-subjects il10 subjects (bench_population's virtual
    population, chunks of 16,384) on 2 threads, lockstep, one run: subjects per second.
saem: `fit_population` on the 21 Liu 2022 patients (bench_saem's set-up) and its `vpc` (200 replicates),
    wall time with the scalar kernel and with the lockstep kernel, one run each.
Prints Markdown tables with the load average next to each number.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_models import parameters  # noqa: E402


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def scipy_lsoda(model, mod, P, times, regimen, rtol, atol) -> float:
    """CPU seconds per subject of solve_ivp(LSODA) with the model's numba rhs and Jacobian."""
    from scipy.integrate import solve_ivp
    n = model.n_states()
    f = np.empty(n)
    cpu = time.thread_time()
    for p in P:
        y0 = np.empty(n)
        mod.initial(p, y0)
        inc = np.zeros((2, n))
        mod.dose_increments(p, inc)
        for dose in regimen:
            y0 += dose.dose_per_kg * inc[0]

        def rhs(t, y, p=p):
            mod.rhs(t, y, p, t, f)
            return f.copy()

        def jac(t, y, p=p):
            J = np.empty((n, n))
            mod.jac(t, y, p, t, J)
            return J
        solve_ivp(rhs, (0, times[-1]), y0, method="LSODA", t_eval=times, rtol=rtol, atol=atol, jac=jac)
    return (time.thread_time() - cpu) / P.shape[0]


def lane_usage(model, lanes, P, times, regimen, solver, stiff_lanes=True):
    """(usage counters, CPU seconds) of one lockstep kernel call on all subjects: Dormand–Prince lane-steps
    attempted and advancing a subject, then the same for the Rodas4 pool."""
    from cartkin.codegen.lanes import compile_lanes
    from cartkin.solve.common import N_COUNTERS
    from cartkin.solve.events import EventTable
    n = P.shape[0]
    module = compile_lanes(model, lanes)
    kernel = module.batch_solve_lanes_stiff if stiff_lanes else module.batch_solve_lanes
    out = np.empty((n * times.size, model.n_states()))
    codes = np.zeros(n, dtype=np.int64)
    t_fail = np.zeros(n)
    counters = np.zeros((n, N_COUNTERS), dtype=np.int64)
    usage = np.zeros(4, dtype=np.int64)
    c0 = time.thread_time()
    kernel(solver.mode, P, np.tile(times, n), np.arange(n + 1, dtype=np.int64) * times.size,
           tuple(EventTable.repeat(regimen.events(model), n)), solver.options, out, codes, t_fail, counters, usage)
    return usage, time.thread_time() - c0


def simulate(args) -> None:
    import cartkin
    from cartkin.codegen import compile_model
    import numba
    numba.set_num_threads(1)
    times = np.linspace(0, 365, 30)
    widths = [int(w) for w in args.lanes.split(",")]
    # kernels: (label, lanes, stiff subjects in the W-lane Rodas4 pool?)
    kernels = [("scalar", 1, True)]
    for w in widths:
        if args.method == "auto":
            kernels.append((f"W={w}, scalar Rodas4 tails", w, False))
        kernels.append((f"W={w}", w, True))
    print(f"\nmethod {args.method}\n")
    print("| model | rtol / atol | mean steps | " + " | ".join(f"{k[0]} µs (CPU)" for k in kernels[:1])
          + " | " + " | ".join(f"lockstep {k[0]} µs (CPU)" for k in kernels[1:])
          + " | " + " | ".join(f"occupancy dopri5 / Rodas4 W={w} | lockstep steps per subject dopri5 / Rodas4 W={w}"
                               for w in widths)
          + " | scipy LSODA µs (CPU) | LSODA / lockstep W=" + str(widths[-1]) + " | identical | load |")
    print("|" + "---|" * (3 + len(kernels) + 2 * len(widths) + 4))
    for name in args.models.split(","):
        model = cartkin.load_model(name)
        mod = compile_model(model)
        regimen = cartkin.Regimen.single(1e5) if model.dose is not None else cartkin.Regimen.none()
        P = parameters(model, args.subjects)
        for w in [1] + widths:  # compile / load every kernel first
            cartkin.simulate_batch(model, regimen, times, P[:2 * w], progress=False,
                                   solver=cartkin.Solver(lanes=w))
        for pair in args.tolerances.split(","):
            rtol, atol = (float(x) for x in pair.split(":"))
            results, cpu = {}, {}
            for _ in range(args.repeats):  # alternate the kernels, so a change of load hits all of them
                for label, w, pool in kernels:
                    solver = cartkin.Solver(args.method, rtol=rtol, atol=atol, lanes=w, stiff_lanes=pool)
                    c0 = time.thread_time()
                    results[label] = cartkin.simulate_batch(model, regimen, times, P, solver=solver, progress=False)
                    cpu.setdefault(label, []).append(time.thread_time() - c0)
            us = {k: statistics.median(c) / args.subjects * 1e6 for k, c in cpu.items()}
            ref = results["scalar"]
            identical = all(np.array_equal(r.codes, ref.codes) and np.array_equal(r.counters, ref.counters)
                            and np.array_equal(r.states, ref.states, equal_nan=True) for r in results.values())
            usage_cells = []
            for w in widths:
                usage, _ = lane_usage(model, w, P, times, regimen, cartkin.Solver(args.method, rtol=rtol, atol=atol))
                rodas = f"{usage[3] / usage[2]:.3f}" if usage[2] else "–"
                usage_cells.append(f"{usage[1] / usage[0]:.3f} / {rodas} | {usage[0] / w / args.subjects:.0f} / "
                                   f"{usage[2] / w / args.subjects:.0f}")
            lsoda = scipy_lsoda(model, mod, P[:args.scipy_subjects], times, regimen, rtol, atol) * 1e6
            best = f"W={widths[-1]}"
            print(f"| {name} | {rtol:g} / {atol:g} | {ref.counters[:, 0].mean():.0f} | {us['scalar']:.1f} | "
                  + " | ".join(f"{us[k[0]]:.1f} ({us['scalar'] / us[k[0]]:.2f}×)" for k in kernels[1:]) + " | "
                  + " | ".join(usage_cells) + f" | {lsoda:.0f} | {lsoda / us[best]:.0f}× | "
                  f"{'yes' if identical else 'NO'} | {load()} |", flush=True)


def assembly(args) -> None:
    """Packed and scalar arithmetic in the code the lockstep kernel runs. numba keeps no assembly for
    functions loaded from its cache: run this part with an empty cache folder (CARTKIN_CACHE_DIR)."""
    import cartkin
    from cartkin.codegen.lanes import compile_lanes
    parts = ("rhs_lanes", "jac_lanes", "lu_factor_lanes", "lu_solve_lanes", "rodas_step_lanes", "batch_solve_lanes",
             "batch_solve_lanes_stiff")
    print("\n| model | W | " + " | ".join(f"{p}: packed (registers) / scalar" for p in parts) + " |")
    print("|---|---|" + "---|" * len(parts))
    arith = r"(add|sub|mul|div|fmadd\w*|fmsub\w*|fnmadd\w*|max|min)"
    times = np.linspace(0, 90, 4)
    for name in args.models.split(","):
        model = cartkin.load_model(name)
        regimen = cartkin.Regimen.single(1e5) if model.dose is not None else cartkin.Regimen.none()
        for w in (int(x) for x in args.lanes.split(",")):
            P = parameters(model, 2 * w)
            cartkin.simulate_batch(model, regimen, times, P, progress=False,
                                   solver=cartkin.Solver(rtol=1e-4, atol=1e-6, lanes=w))
            module = compile_lanes(model, w)
            cells = []
            for part in parts:
                fn = getattr(module, part)
                if not fn.signatures:
                    cells.append("not compiled here (loaded from the cache, or not run)")
                    continue
                asm = fn.inspect_asm(fn.signatures[0])
                ops = re.findall(r"^\s+(v\w+)\s+([^\n]*)", asm, flags=re.M)
                packed = [a for o, a in ops if re.fullmatch(r"v" + arith + "pd", o)]
                regs = sorted({r for a in packed for r in re.findall(r"([xyz]mm)\d", a)})
                scalar = [o for o, _ in ops if re.fullmatch(r"v" + arith + "sd", o)]
                cells.append(f"{len(packed)} ({', '.join(regs)}) / {len(scalar)}")
            print(f"| {name} | {w} | " + " | ".join(cells) + " |", flush=True)


# each model's virtual population for the population part: log-normal CVs (%) and covariates
POPULATIONS = {
    "il10": ({"f_blood": 30, "k_act": 30, "rho": 20, "kappa": 30, "k_exh": 30, "k_mem": 30, "delta_E": 30,
              "delta_M": 30, "r_L": 30, "B0": 30}, {"L0": (1000.0, 100.0)}),
    "liu2022": ({"rTA0": 30, "lTA0": 30, "eBp": 50, "nTN0": 100}, {"nB0": (2200.0, 100.0)}),
    "stein2019": ({"foldx": 50, "Tmax": 30, "Cmax": 50, "alpha": 30, "FB": 50, "beta": 30}, {}),
}


def population(args) -> None:
    import numba
    import cartkin
    from cartkin.population import LogNormal
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    n = args.population_subjects
    times = np.linspace(0, 365, 30)
    print("\n| model | subjects | threads | kernel | wall time | subjects per second | mean steps | solved | "
          "load before / after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        cv, covariates = POPULATIONS[name]
        pop = cartkin.Population(name, n=n, seed=2026, variability=cartkin.Variability(cv=cv),
                                 covariates={k: LogNormal(*v) for k, v in covariates.items()})
        model = cartkin.load_model(name)
        regimen = cartkin.Regimen.single(dose_per_kg=1e5) if model.dose is not None else cartkin.Regimen.none()
        cartkin.simulate_summaries(name, regimen, times, cartkin.Population(name, n=64), progress=False)
        for lanes in [None] + ([1] if args.population_scalar else []):
            before = load()
            t0 = time.perf_counter()
            res = cartkin.simulate_summaries(name, regimen, times, pop, progress=False,
                                             solver=cartkin.Solver(lanes=lanes))
            wall = time.perf_counter() - t0
            kernel = "scalar" if lanes == 1 else "lockstep"
            print(f"| {name} | {n:,} | {numba.get_num_threads()} | {kernel} | {wall:.1f} s | {n / wall:,.0f} | "
                  f"{res.counters[0] / n:.0f} | {int(res.ok.sum()):,} | {before} / {load()} |", flush=True)


def saem(args) -> None:
    import numba
    import cartkin
    from cartkin.estimation import fit_population, vpc
    from bench_saem import LIU
    from cartkin.data import read_data
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    data = read_data([LIU / "Data_CR.csv", LIU / "Data_NR.csv"], "liu2022",
                     column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"}, dvid_map={1: "nTA", 2: "nB"},
                     covariates={"Reg": "nB0"}, censor_floor=0.2, prefix_ids=True)
    print("\n| kernel | SAEM fit s | of which SAEM iterations s | VPC (200 replicates) s | -2LL | load before / after |")
    print("|---|---|---|---|---|---|")
    for lanes in (1, None, 1, None)[:2 * args.saem_runs]:
        before = load()
        t0 = time.perf_counter()
        fit = fit_population("liu2022", data, estimate=["rTA0", "lTA0", "eBp", "nTN0"],
                             covariate_effects=["rTA0=nB0:power"], seed=0, solver=cartkin.Solver(lanes=lanes))
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        vpc(fit, replicates=200)
        check = time.perf_counter() - t1
        kernel = "scalar" if lanes == 1 else "lockstep"
        print(f"| {kernel} | {total:.1f} | {fit.timings['saem']:.1f} | {check:.1f} | {fit.ofv:.4f} | "
              f"{before} / {load()} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="simulate,asm,population,saem")
    ap.add_argument("--subjects", type=int, default=2000)
    ap.add_argument("--scipy-subjects", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="il10,liu2022,stein2019")
    ap.add_argument("--tolerances", default="1e-6:1e-9,1e-4:1e-6")
    ap.add_argument("--lanes", default="4,8")
    ap.add_argument("--method", default="auto", help="auto or dopri5 (the simulate part)")
    ap.add_argument("--population-subjects", type=int, default=1_000_000)
    ap.add_argument("--population-scalar", action="store_true", help="also run the population with lanes=1")
    ap.add_argument("--saem-runs", type=int, default=1, help="pairs of (scalar, lockstep) fits")
    args = ap.parse_args()
    import numba

    import cartkin
    from cartkin.codegen.lanes import lane_width
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numba "
          f"{numba.__version__}; this machine's lane width {lane_width()}; {time.strftime('%Y-%m-%d %H:%M')} UTC; "
          f"cartkin from {os.path.dirname(cartkin.__file__)}; load {load()}")
    parts = {"simulate": simulate, "asm": assembly, "population": population, "saem": saem}
    for part in args.parts.split(","):
        parts[part](args)


if __name__ == "__main__":
    main()
