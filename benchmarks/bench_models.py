"""Benchmark: µs per one-year subject and where the steps go, for every built-in model, on 1 thread.

Run by hand (not in tests):  python benchmarks/bench_models.py [--subjects 2000] [--repeats 3]

il10 uses bench_simulate's virtual patients (one infusion of 1e5 cells/kg); liu2022 and stein2019 draw
each kinetic parameter log-normal (CV 20%) around its default (no dose: their initial state is the
infusion). 365 days, 30 output times, `simulate_batch` on one numba thread, median of --repeats runs.
Besides wall time it reports the calling thread's CPU time (`time.thread_time`; with one numba thread
the batch kernel runs on the calling thread): on a shared machine the wall time counts the waits for a
core, the CPU time does not. Steps: mean attempted, accepted, rejected, RHS and Jacobian evaluations
per subject (cartkin.solve.common's counters; every Rodas4 step evaluates one Jacobian, so a model with
none never switched). Uses only the public API, so the same script measures
any checkout (PYTHONPATH=that/src).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_simulate import population  # noqa: E402  (the il10 virtual patients of the other benchmarks)

VARIED = {"liu2022": ("rBp", "rTA0", "lTA0", "eBp", "ka", "nB0", "nTN0"),
          "stein2019": ("foldx", "Tmax", "Cmax", "alpha", "FB", "beta")}


def parameters(model, n: int, seed: int = 1) -> np.ndarray:
    if model.name == "il10":
        return population(model, n, seed)
    rng = np.random.default_rng(seed)
    P = np.tile([q.default for q in model.parameter_info], (n, 1))
    omega = np.sqrt(np.log(1 + 0.2 ** 2))
    for name in VARIED[model.name]:
        P[:, model.parameter_index(name)] *= np.exp(rng.normal(0.0, omega, n))
    lower = [q.lower for q in model.parameter_info]
    upper = [q.upper for q in model.parameter_info]
    return np.clip(P, lower, upper)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="il10,liu2022,stein2019")
    ap.add_argument("--tolerances", default="1e-6:1e-9,1e-4:1e-6")
    args = ap.parse_args()
    import numba

    import cartkin
    numba.set_num_threads(1)
    times = np.linspace(0, 365, 30)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numba "
          f"{numba.__version__}; {time.strftime('%Y-%m-%d %H:%M')}; cartkin from {os.path.dirname(cartkin.__file__)}")
    print("| model | rtol / atol | µs per subject, wall | µs per subject, CPU | steps | accepted | rejected | "
          "RHS | Jacobians | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model = cartkin.load_model(name)
        regimen = cartkin.Regimen.single(1e5) if model.dose is not None else cartkin.Regimen.none()
        P = parameters(model, args.subjects)
        cartkin.simulate_batch(model, regimen, times, P[:4], progress=False)  # compile / load
        for pair in args.tolerances.split(","):
            rtol, atol = (float(x) for x in pair.split(":"))
            wall, cpu = [], []
            for _ in range(args.repeats):
                w0, c0 = time.perf_counter(), time.thread_time()
                res = cartkin.simulate_batch(model, regimen, times, P, rtol=rtol, atol=atol, progress=False)
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - w0)
            assert res.ok.all(), res.failures()
            c = res.counters.mean(axis=0)
            load = os.getloadavg()[0]
            print(f"| {name} | {rtol:g} / {atol:g} | {statistics.median(wall) / args.subjects * 1e6:.1f} | "
                  f"{statistics.median(cpu) / args.subjects * 1e6:.1f} | {c[0]:.0f} | {c[1]:.0f} | {c[2]:.1f} | "
                  f"{c[3]:.0f} | {c[4]:.1f} | {load:.1f} |", flush=True)


if __name__ == "__main__":
    main()
