"""Benchmark and simulation study of the population fit (SAEM).

Run by hand (not in tests):  python benchmarks/bench_saem.py [--replicates 10] [--subjects 40] [--skip-real]

1. Wall time of `cartkin.fit_population` on the 21 real Liu 2022 patients (../shared/data/liu2022, the
   README's model: random effects on rTA0, lTA0, eBp, nTN0, power effect of nB0 on rTA0), default
   settings (K1 = 300, K2 = 150), with 1 and 2 numba threads; split into the SAEM iterations and the
   post-fit steps (conditional sampling, modes, importance sampling, Fisher information).
2. Recovery: `--replicates` data sets of `--subjects` liu2022 subjects simulated from known population
   parameters (three log-normal random effects, a power covariate effect, proportional error 0.3 on nTA
   and nB, censoring at 0.2), each fitted from the published values: relative bias, relative RMSE and
   coverage of the 95% intervals per parameter.
3. Scaling: wall time against the number of simulated subjects.

Prints Markdown tables to paste into README.md.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np

import cartkin
from cartkin.data import Dataset, Subject, read_data
from cartkin.estimation import SaemOptions, fit_population

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022"
TRUTH = {"rTA0": 1.62, "lTA0": 0.12, "eBp": 22.72}
OMEGA = {"rTA0": 0.3, "lTA0": 0.2, "eBp": 0.4}
BETA = -0.4
SIGMA = 0.3
TIMES = np.array([1.0, 3, 7, 10, 14, 21, 28, 42, 56, 84])


def simulated(n: int, seed: int) -> Dataset:
    model = cartkin.load_model("liu2022")
    rng = np.random.default_rng(seed)
    nb0 = np.exp(rng.normal(math.log(1000), 1.0, n))
    params = {"nB0": nb0}
    for name, value in TRUTH.items():
        params[name] = value * np.exp(rng.normal(0, math.sqrt(OMEGA[name]), n))
    params["rTA0"] = params["rTA0"] * (nb0 / 1000) ** BETA
    batch = cartkin.simulate_batch(model, None, TIMES, params, rtol=1e-10, atol=1e-12, progress=False)
    subjects = []
    for i in range(n):
        t = np.concatenate([TIMES, TIMES])
        k = np.repeat([0, 1], TIMES.size)
        f = np.concatenate([batch.observable("nTA")[i], batch.observable("nB")[i]])
        y = f * np.exp(rng.normal(0, SIGMA, f.size))
        order = np.argsort(t, kind="stable")
        t, k, y = t[order], k[order], y[order]
        cens = y <= 0.2
        subjects.append(Subject(str(i + 1), t, np.where(cens, 0.2, y), k, cens, np.where(cens, 0.2, np.nan),
                                {"nB0": float(nb0[i])}))
    return Dataset(tuple(subjects), model.observables)


def real_timing() -> list[str]:
    data = read_data([LIU / "Data_CR.csv", LIU / "Data_NR.csv"], "liu2022",
                     column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"}, dvid_map={1: "nTA", 2: "nB"},
                     covariates={"Reg": "nB0"}, censor_floor=0.2, prefix_ids=True)
    lines = ["| threads | SAEM iterations s | post-fit s | total s | -2LL | converged |", "|---|---|---|---|---|---|"]
    available = numba.config.NUMBA_NUM_THREADS
    for threads in sorted({1, min(2, available)}):
        numba.set_num_threads(threads)
        t0 = time.perf_counter()
        result = fit_population("liu2022", data, estimate=["rTA0", "lTA0", "eBp", "nTN0"],
                                covariate_effects=["rTA0=nB0:power"], seed=0)
        total = time.perf_counter() - t0
        saem = result.timings["saem"]
        lines.append(f"| {threads} | {saem:.1f} | {total - saem:.1f} | {total:.1f} | {result.ofv:.2f} | "
                     f"{'yes' if result.converged else 'no'} |")
        print(lines[-1], flush=True)
    numba.set_num_threads(available)
    return lines


def recovery(replicates: int, subjects: int) -> list[str]:
    names = list(TRUTH) + ["beta_rTA0_nB0"] + [f"omega2_{p}" for p in TRUTH] + ["sigma_nTA", "sigma_nB"]
    truth = dict(TRUTH, beta_rTA0_nB0=BETA, **{f"omega2_{p}": v for p, v in OMEGA.items()},
                 sigma_nTA=SIGMA, sigma_nB=SIGMA)
    estimates = {n: [] for n in names}
    covered = {n: [] for n in names}
    times, converged = [], 0
    for r in range(replicates):
        data = simulated(subjects, seed=1000 + r)
        t0 = time.perf_counter()
        result = fit_population("liu2022", data, estimate=list(TRUTH), covariate_effects=["rTA0=nB0:power"],
                                seed=r)
        times.append(time.perf_counter() - t0)
        converged += result.converged
        rows = {row["parameter"]: row for row in result.population_rows()}
        for n in names:
            estimates[n].append(rows[n]["estimate"])
            covered[n].append(rows[n]["lower"] <= truth[n] <= rows[n]["upper"])
        print(f"replicate {r + 1}/{replicates}: {times[-1]:.1f} s, converged {result.converged}", flush=True)
    lines = [f"{replicates} data sets × {subjects} subjects; {converged}/{replicates} converged; "
             f"{np.mean(times):.1f} s per fit (mean)", "",
             "| parameter | truth | mean estimate | relative bias % | relative RMSE % | 95% CI coverage |",
             "|---|---|---|---|---|---|"]
    for n in names:
        e = np.array(estimates[n])
        t = truth[n]
        lines.append(f"| {n} | {t:g} | {e.mean():.4g} | {100 * (e.mean() - t) / abs(t):+.1f} | "
                     f"{100 * math.sqrt(np.mean((e - t) ** 2)) / abs(t):.1f} | {np.mean(covered[n]) * 100:.0f}% |")
    return lines


def scaling(sizes=(20, 40, 80, 160)) -> list[str]:
    lines = ["| subjects | chains | SAEM iterations s | total s |", "|---|---|---|---|"]
    for n in sizes:
        data = simulated(n, seed=7)
        t0 = time.perf_counter()
        result = fit_population("liu2022", data, estimate=list(TRUTH), covariate_effects=["rTA0=nB0:power"],
                                seed=0, options=SaemOptions())
        lines.append(f"| {n} | {result.settings['chains']} | {result.timings['saem']:.1f} | "
                     f"{time.perf_counter() - t0:.1f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    cartkin.simulate("liu2022", None, [1.0])  # compile / load the model outside the timings
    out = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {numba.config.NUMBA_NUM_THREADS} "
           f"cores, Python {platform.python_version()}, numba {numba.__version__}.", ""]
    if not args.skip_real:
        if LIU.is_dir():
            out += ["**21 real Liu 2022 patients** (random effects on rTA0, lTA0, eBp, nTN0; nB0 power effect on "
                    "rTA0; K1 = 300, K2 = 150; 3 chains)", ""] + real_timing() + [""]
        else:
            print(f"real data not found at {LIU}: skipped", file=sys.stderr)
    out += ["**Recovery** (liu2022, 3 random effects, nB0 power effect, proportional error 0.3, censoring at 0.2)",
            ""] + recovery(args.replicates, args.subjects) + [""]
    out += ["**Scaling** (simulated liu2022 subjects, 1 start, default settings)", ""] + scaling()
    print("\n" + "\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
