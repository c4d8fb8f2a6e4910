"""Benchmark: one calibration run of each shipped targets file (`cartkin calibrate`), wall time.

Run by hand (not in tests):  python benchmarks/bench_calibrate.py [--runs 3] [--threads 2] [--targets eliana,meta10-19]
Each run is the whole of `cartkin.calibrate(NAME)`: every round's proposal simulation, the optimisation, the
Hessian, the plain re-simulation (and, for meta10-19, the profile). The compiled il10 code is loaded by a
first untimed run, so the times are warm; the median of --runs is reported with the machine, the load
average and the date.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import numba

import cartkin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per targets file (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="numba threads (default 2)")
    parser.add_argument("--targets", default="eliana,meta10-19", help="shipped targets files, comma-separated")
    args = parser.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, "
          f"{datetime.date.today()}, load average {os.getloadavg()[0]:.1f}")
    for name in args.targets.split(","):
        cartkin.calibrate(name)  # warm: compiled code loaded
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = cartkin.calibrate(name)
            times.append(time.perf_counter() - t0)
        inside = sum(r.inside for r in result.rows)
        print(f"{name}: median {statistics.median(times):.1f} s over {args.runs} runs "
              f"({', '.join(f'{t:.1f}' for t in times)}); {'converged' if result.converged else 'not converged'}, "
              f"{inside} of {len(result.rows)} targets inside")


if __name__ == "__main__":
    main()
