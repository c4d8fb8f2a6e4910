"""Benchmark: simulate_batch of il10 virtual patients vs scipy solve_ivp (LSODA, numba-compiled RHS).

Run by hand (not in tests):  python benchmarks/bench_simulate.py [--subjects 10000] [--scipy-subjects 100]
Prints a Markdown table to paste into README.md. Compile times are measured in fresh subprocesses:
"first call" with an empty cache folder, "cached start" with the cache filled by the first run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = r"""
import time, json, sys
t0 = time.perf_counter()
import cartkin, numpy as np
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
r = cartkin.simulate("il10", cartkin.Regimen.single(1e5), np.linspace(0, 365, 30))
t_first = time.perf_counter() - t1
assert r.status.ok
print(json.dumps({"import": t_import, "first_simulate": t_first}))
"""


def child_timing(cache: str) -> dict:
    env = dict(os.environ, CARTKIN_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def population(model, n: int, seed: int = 1) -> np.ndarray:
    """Log-normal (CV 30%) around the defaults for the kinetic parameters; L0 CV 100%."""
    rng = np.random.default_rng(seed)
    P = np.tile([q.default for q in model.parameter_info], (n, 1))
    for name, cv in {"f_blood": 0.3, "k_act": 0.3, "rho": 0.2, "kappa": 0.3, "k_exh": 0.3, "k_mem": 0.3,
                     "delta_E": 0.3, "delta_M": 0.3, "r_L": 0.3, "L0": 1.0, "B0": 0.3}.items():
        omega = np.sqrt(np.log(1 + cv ** 2))
        P[:, model.parameter_index(name)] *= np.exp(rng.normal(0.0, omega, n))
    return P


def scipy_lsoda(model, P, times, dose_per_kg, rtol, atol):
    """Reference implementation a user would write: solve_ivp(LSODA) with cartkin's numba RHS."""
    from scipy.integrate import solve_ivp

    from cartkin.codegen import compile_model
    mod = compile_model(model)
    n = model.n_states()
    out = np.empty((P.shape[0], times.size, n))
    f = np.empty(n)
    for i, p in enumerate(P):
        y0 = np.empty(n)
        mod.initial(p, y0)
        y0[model.state_index("N")] += dose_per_kg * mod.dose_scale(p)

        def rhs(t, y, p=p):
            mod.rhs(t, y, p, 0.0, f)
            return f.copy()

        def jac(t, y, p=p):
            J = np.empty((n, n))
            mod.jac(t, y, p, 0.0, J)
            return J
        sol = solve_ivp(rhs, (0, times[-1]), y0, method="LSODA", t_eval=times, rtol=rtol, atol=atol, jac=jac)
        out[i] = sol.y.T
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=10_000)
    ap.add_argument("--scipy-subjects", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        cold = child_timing(cache)
        warm = child_timing(cache)

    import numba

    import cartkin
    model = cartkin.load_model("il10")
    times = np.linspace(0, 365, 30)
    regimen = cartkin.Regimen.single(1e5)
    P = population(model, args.subjects)
    cartkin.simulate_batch(model, regimen, times, P[:10])  # compile / load

    rows = []
    for rtol, atol in ((1e-6, 1e-9), (1e-4, 1e-6)):
        timing = {}
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            best = np.inf
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = cartkin.simulate_batch(model, regimen, times, P, rtol=rtol, atol=atol, progress=False)
                best = min(best, time.perf_counter() - t0)
            timing[threads] = best
        assert res.ok.all(), res.failures()
        steps = res.counters[:, 0].mean()
        m = args.scipy_subjects
        t0 = time.perf_counter()
        ref = scipy_lsoda(model, P[:m], times, 1e5, rtol, atol)
        t_scipy = (time.perf_counter() - t0) / m
        ours_1 = timing[1] / args.subjects
        # day 0 is excluded: cartkin reports the pre-infusion sample there (0 cells), scipy the post-dose state
        car_ours = res.observable("car_blood")[:m, 1:]
        car_ref = ref[:, 1:, :4].sum(axis=2)
        diff = np.nanmax(np.abs(car_ours - car_ref) / np.maximum(np.abs(car_ref), 1e-3))
        rows.append({"rtol": rtol, "atol": atol, "us_per_subject_1thread": ours_1 * 1e6,
                     "threads": max(timing), "us_per_subject_all": timing[max(timing)] / args.subjects * 1e6,
                     "mean_steps": steps, "scipy_ms_per_subject": t_scipy * 1e3, "speedup": t_scipy / ours_1,
                     "max_rel_diff_car_blood": diff})

    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numba {numba.__version__}; date {time.strftime('%Y-%m-%d')}")
    print(f"il10, {args.subjects} subjects, 365 days, 30 output times, 1e5 cells/kg; scipy on {args.scipy_subjects}")
    print(f"First call in a new process, empty cache: import {cold['import']:.2f} s + compile and solve "
          f"{cold['first_simulate']:.1f} s; cached start: import {warm['import']:.2f} s + "
          f"{warm['first_simulate']:.2f} s\n")
    print("| rtol / atol | µs per subject, 1 thread | µs per subject, all threads | mean steps | "
          "scipy LSODA ms per subject | speed-up (1 thread) | max rel. diff vs scipy |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rtol']:g} / {r['atol']:g} | {r['us_per_subject_1thread']:.1f} | "
              f"{r['us_per_subject_all']:.1f} ({r['threads']} threads) | {r['mean_steps']:.0f} | "
              f"{r['scipy_ms_per_subject']:.1f} | {r['speedup']:.0f}× | {r['max_rel_diff_car_blood']:.1e} |")


if __name__ == "__main__":
    main()
