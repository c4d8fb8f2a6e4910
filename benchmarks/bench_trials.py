"""Benchmark: trial replicates of the built-in meta10-19 scenario (500 trials x 12 patients x 5 arms).

Run by hand (not in tests):  python benchmarks/bench_trials.py [--runs 3] [--threads 1 2] [--chunk 512 2048]
Each run is a fresh process (warm numba cache) calling `cartkin.run_trials` on the scenario as shipped
(il10, one year, 451 output times, rtol 1e-6): 30,000 subjects solved in chunks and reduced to per-patient
outcomes, then to per-trial counts. Prints a Markdown table: median wall time over the runs, µs per subject,
peak memory (max RSS) and P(>= 12/12 responses) of the first arm, which must not change between rows.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numba, cartkin
threads, chunk = int(sys.argv[1]), int(sys.argv[2])
numba.set_num_threads(threads)
scenario = cartkin.default_scenario()
t0 = time.perf_counter()
trials = cartkin.run_trials(scenario, progress=False, chunk_size=chunk)
wall = time.perf_counter() - t0
arm = scenario.arms[0].name
print(json.dumps({"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "subjects": trials.size * trials.replicates * len(scenario.arms),
                  "p": trials.probability(arm, trials.observed[0])[0]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk", type=int, nargs="+", default=[512])
    args = parser.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print("| threads | chunk | runs | median wall s | µs per subject | peak memory MB | P(>= 12/12), first arm |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        for chunk in args.chunk:
            results = []
            for _ in range(args.runs):
                out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(chunk)], check=True,
                                     capture_output=True, text=True).stdout
                results.append(json.loads(out.strip().splitlines()[-1]))
            wall = statistics.median(r["wall"] for r in results)
            n = results[0]["subjects"]
            print(f"| {threads} | {chunk} | {args.runs} | {wall:.1f} | {1e6 * wall / n:.0f} | "
                  f"{max(r['rss_mb'] for r in results):.0f} | {results[0]['p']:.3f} |", flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
