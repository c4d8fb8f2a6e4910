"""Benchmark: one liu2022 subject fit with cartkin against scipy least_squares over solve_ivp.

Run by hand (not in tests):

    python benchmarks/bench_fit.py [--data ../shared/data/liu2022/Data_CR.csv] [--methods LSODA,Radau]

Subjects: the Liu 2022 complete-remission patients (about 12 observations each, CAR T and leukaemia,
censored below 0.2) when ../shared/data is present, else 14 simulated subjects with the same design.
Both fitters minimise the same −log L (proportional error with the residual SDs fixed at the values a
pooled cartkin fit of these subjects finds; censored points through the M3 term) over the same four
log-parameters (rTA0, lTA0, eBp, nTN0) within the same 1000-fold box, from the same start (the model
defaults), at the same ODE tolerances (rtol 1e-8, atol 1e-10):

* cartkin `fit(..., starts=1)`: L-BFGS-B with gradients from the generated forward sensitivities, solved
  in compiled code, then the observed information (8 more gradient solves) for SEs; and the default
  `starts=4` (best of 100 screened points plus three more local fits) for reference;
* scipy `least_squares` (trust region reflective, finite-difference Jacobian) on residuals
  (log y − log f)/σ, and sqrt(−2 log Φ(u)) for censored points, so that ½ Σ r² + const is the same
  −log L, each residual vector from `solve_ivp` (LSODA or Radau) with the generated numba right-hand side
  and Jacobian.

Prints a Markdown table (time per subject, total −log L of each fitter over all subjects, subjects where
each fitter is better by > 0.01, time ratio) with machine and date, to paste into README.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

import cartkin
from cartkin.codegen import compile_model
from cartkin.data import Dataset, Subject, read_data
from cartkin.estimation import fit
from cartkin.stats.error_models import ProportionalError

ROOT = Path(__file__).resolve().parents[1]
FREE = ("rTA0", "lTA0", "eBp", "nTN0")
RTOL, ATOL = 1e-8, 1e-10
SPAN = np.log(1000.0)


def subjects(path: Path, model) -> tuple[Dataset, str]:
    if path.is_file():
        data = read_data(path, model, column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"},
                         dvid_map={1: "nTA", 2: "nB"}, covariates={"Reg": "nB0"}, censor_floor=0.2)
        return data, f"{path.name} ({data.n_subjects} patients)"
    rng = np.random.default_rng(7)
    times = np.array([2.0, 5, 10, 14, 21, 28, 42, 60])
    out = []
    for i in range(14):
        truth = {q: model.parameters[q] * np.exp(rng.normal(0, 0.5)) for q in FREE}
        truth["nB0"] = float(np.exp(rng.uniform(np.log(5), np.log(5000))))
        res = cartkin.simulate(model, None, times, truth, rtol=1e-10, atol=1e-12)
        t, v, k = [], [], []
        for j, obs in enumerate(("nTA", "nB")):
            keep = times if obs == "nTA" else times[[1, 3, 5, 7]]
            y = res.observable(obs)[np.isin(times, keep)] * np.exp(rng.normal(0, 0.5, keep.size))
            t += list(keep)
            v += list(y)
            k += [j] * keep.size
        order = np.argsort(t, kind="stable")
        t, v, k = np.array(t)[order], np.array(v)[order], np.array(k)[order]
        cens = v <= 0.2
        out.append(Subject(str(i + 1), t, np.where(cens, 0.2, v), k, cens, np.where(cens, 0.2, np.nan),
                           {"nB0": truth["nB0"]}))
    return Dataset(tuple(out), model.observables), "14 simulated subjects (no ../shared/data)"


def objective(model, subject, p, log_sigma) -> float:
    """−log L of a subject at full parameter vector p (cartkin's likelihood, for both fitters)."""
    res = cartkin.simulate(model, None, np.unique(subject.times), dict(zip(model.parameter_names, p)),
                           rtol=RTOL, atol=ATOL)
    total = 0.0
    for k in np.unique(subject.observable_index):
        sel = subject.observable_index == k
        pred = np.interp(subject.times[sel], np.unique(subject.times), res.observable(model.observables[k]))
        total += ProportionalError().negative_log_likelihood(pred, subject.values[sel], subject.censored[sel],
                                                             subject.limits[sel], [np.exp(log_sigma[k])]).value
    return total


def scipy_fit(model, mod, subject, sigma, method: str):
    """least_squares over solve_ivp from the defaults; returns (full parameter vector, seconds)."""
    from scipy.integrate import solve_ivp
    from scipy.optimize import least_squares
    from scipy.special import log_ndtr

    from bench_peers import scipy_functions  # the same njit wrappers as the simulation benchmark's peers

    n = model.n_states()
    f, J = scipy_functions(mod, n)
    base = np.array([q.default for q in model.parameter_info])
    for name, value in subject.covariates.items():
        base[model.parameter_index(name)] = value
    index = [model.parameter_index(q) for q in FREE]
    x0 = np.log(base[index])
    times = np.unique(subject.times)
    rows = np.searchsorted(times, subject.times)
    state = [model.state_index(o) for o in model.observables[:2]]  # nTA and nB are states
    s = np.array([sigma[k] for k in subject.observable_index])
    log_target = np.log(np.where(subject.censored, subject.limits, subject.values))

    def residuals(x):
        p = base.copy()
        p[index] = np.exp(x)
        y0 = np.empty(n)
        mod.initial(p, y0)
        sol = solve_ivp(f, (0.0, times[-1]), y0, method=method, t_eval=times, rtol=RTOL, atol=ATOL, jac=J,
                        args=(p,))
        if not sol.success:
            return np.full(subject.n_observations, 1e3)
        pred = sol.y[np.array(state)[subject.observable_index], rows]
        u = (log_target - np.log(np.maximum(pred, 1e-300))) / s
        return np.where(subject.censored, np.sqrt(np.maximum(-2.0 * log_ndtr(u), 0.0)), -u)

    residuals(x0)  # compile the njit wrappers outside the timing
    t0 = time.perf_counter()
    res = least_squares(residuals, x0, jac="2-point", method="trf", bounds=(x0 - SPAN, x0 + SPAN))
    seconds = time.perf_counter() - t0
    p = base.copy()
    p[index] = np.exp(res.x)
    return p, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "liu2022" / "Data_CR.csv"))
    parser.add_argument("--methods", default="LSODA,Radau", help="solve_ivp methods (default LSODA,Radau)")
    args = parser.parse_args()
    model = cartkin.load_model("liu2022")
    data, label = subjects(Path(args.data), model)
    pooled = fit(model, data, estimate=FREE, pooled_sigma=True, rtol=RTOL, atol=ATOL)  # warm-up and the SDs
    sigma = {n: v for n, v, _ in pooled.pooled_sigma}
    log_sigma = np.log([sigma["sigma_nTA"], sigma["sigma_nB"], 1.0])
    mod = compile_model(model)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = {"cartkin fit, 1 start": [], "cartkin fit, 4 starts (default)": []}
    rows.update({f"scipy least_squares + solve_ivp {m}": [] for m in methods})
    for subject in data.subjects:
        one = Dataset((subject,), data.observables)
        for key, starts in (("cartkin fit, 1 start", 1), ("cartkin fit, 4 starts (default)", 4)):
            t0 = time.perf_counter()
            result = fit(model, one, estimate=FREE, sigma=sigma, starts=starts, rtol=RTOL, atol=ATOL)
            seconds = time.perf_counter() - t0
            rows[key].append((seconds, objective(model, subject, result.fits[0].parameters, log_sigma)))
        for method in methods:
            p, seconds = scipy_fit(model, mod, subject, [sigma["sigma_nTA"], sigma["sigma_nB"]], method)
            rows[f"scipy least_squares + solve_ivp {method}"].append((seconds, objective(model, subject, p,
                                                                                         log_sigma)))
    n_obs = statistics.mean(s.n_observations for s in data.subjects)
    print(f"liu2022, {label}, {n_obs:.1f} observations per subject (mean); residual SDs fixed at the pooled fit's "
          f"sigma_nTA {sigma['sigma_nTA']:.3g}, sigma_nB {sigma['sigma_nB']:.3g}; rtol {RTOL:g}, atol {ATOL:g}.\n")
    reference = np.array([o for _, o in rows["cartkin fit, 1 start"]])
    base_time = statistics.mean(t for t, _ in rows["cartkin fit, 1 start"])
    print("| fitter | s per subject (mean) | s per subject (max) | total −log L | subjects better / worse than "
          "cartkin 1 start (by > 0.01) | time vs cartkin 1 start |")
    print("|---|---|---|---|---|---|")
    for key, values in rows.items():
        times = [t for t, _ in values]
        objs = np.array([o for _, o in values])
        better, worse = int(np.sum(objs < reference - 0.01)), int(np.sum(objs > reference + 0.01))
        print(f"| {key} | {statistics.mean(times):.3f} | {max(times):.3f} | {objs.sum():.2f} | "
              f"{better} / {worse} | {statistics.mean(times) / base_time:.1f}× |")
    import numba
    print(f"\nMeasured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores (shared), Python {platform.python_version()}, numba {numba.__version__}, "
          f"scipy {__import__('scipy').__version__}.")


if __name__ == "__main__":
    main()
