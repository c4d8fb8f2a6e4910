"""Benchmark: population throughput with chunked summaries (10^5 and 10^6 il10 subjects).

Run by hand (not in tests):  python benchmarks/bench_population.py [--sizes 100000 1000000] [--rtol 1e-6]
Each configuration runs in a fresh process (warm numba cache) so its peak memory (max RSS) is its own.
Subjects: a cartkin.Population with log-normal variability on the kinetic parameters and L0 (drawn chunk
by chunk), one infusion of 1e5 cells/kg, 365 days, 30 output times; each chunk is reduced to Cmax, Tmax,
AUC0–28, AUC0–84, half-life and Tlast of car_blood, then dropped. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import numba, numpy as np, cartkin
from cartkin.population import LogNormal
n, threads, rtol, atol, chunk = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
numba.set_num_threads(threads)
pop = cartkin.Population("il10", n=n, seed=2026, variability=cartkin.Variability(cv={
    "f_blood": 30, "k_act": 30, "rho": 20, "kappa": 30, "k_exh": 30, "k_mem": 30, "delta_E": 30,
    "delta_M": 30, "r_L": 30, "B0": 30}), covariates={"L0": LogNormal(1000.0, 100.0)})
times = np.linspace(0, 365, 30)
regimen = cartkin.Regimen.single(dose_per_kg=1e5)
cartkin.simulate_summaries("il10", regimen, times, cartkin.Population("il10", n=4), progress=False)  # load
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
res = cartkin.simulate_summaries("il10", regimen, times, pop, rtol=rtol, atol=atol, chunk_size=chunk,
                                 progress=False)
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall": wall, "rss_mb": rss / 1024, "rss_before_mb": rss0 / 1024, "ok": int(res.ok.sum()),
                  "steps": float(res.counters[0] / n), "median_cmax": float(np.nanmedian(res.values["cmax"]))}))
"""


def run(n: int, threads: int, rtol: float, atol: float, chunk: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(threads), str(rtol), str(atol), str(chunk)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--atol", type=float, default=1e-9)
    parser.add_argument("--chunk", type=int, default=16_384)
    args = parser.parse_args()
    import numba
    import cartkin
    cores = os.cpu_count()
    rows = []
    for n in args.sizes:
        for threads in sorted({1, cores}) if n == min(args.sizes) else [cores]:
            r = run(n, threads, args.rtol, args.atol, args.chunk)
            rows.append((n, threads, r))
            print(f"n={n} threads={threads}: {r}", file=sys.stderr)
    print(f"\nMachine: {platform.machine()}, {cores} cores, Python {platform.python_version()}, "
          f"numba {numba.__version__}, cartkin {cartkin.__version__}; date {time.strftime('%Y-%m-%d')}")
    print(f"il10, 365 days, 30 output times, 1e5 cells/kg, rtol {args.rtol:g} / atol {args.atol:g}, "
          f"chunks of {args.chunk} subjects, summaries only\n")
    print("| subjects | threads | wall time | subjects per second | µs per subject per thread | mean steps "
          "| peak memory (max RSS) | solved |")
    print("|---|---|---|---|---|---|---|---|")
    for n, threads, r in rows:
        print(f"| {n:,} | {threads} | {r['wall']:.1f} s | {n / r['wall']:,.0f} | "
              f"{r['wall'] / n * threads * 1e6:.1f} | {r['steps']:.0f} | {r['rss_mb']:.0f} MB "
              f"(before: {r['rss_before_mb']:.0f} MB) | {r['ok']:,} |")


if __name__ == "__main__":
    main()
