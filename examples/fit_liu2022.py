"""Fit the real B-ALL CAR T kinetics of Liu et al. 2022 with liu2022 and il10: the numbers and the figures of
the README's "Real data (Liu 2022)" section.

    python examples/fit_liu2022.py [--data ../shared/data/liu2022] [-o liu2022-fits] [--free-sets]
        [--maximum-likelihood]

For each file (Data_CR.csv: 14 patients in continuous remission, Data_NR.csv: 7 non-responders):

* liu2022 on CAR T (DVID 1 -> nTA) and leukaemia (DVID 2 -> nB), Reg -> nB0;
* liu2022 on the CAR T rows only (DVID 2 skipped), the like-for-like comparison of the CAR-T-only il10 fits;
* liu2022 on both, maximum a posteriori with its own population fit's typical values and omegas as priors
  (the like-for-like comparison of il10's MAP fits);
* il10 on CAR T (DVID 1 -> car_blood) and leukaemia (DVID 2 -> leukaemia, the CD19+ cells L: the same blast
  relation as liu2022's nB, so the same units), Reg -> L0, a conventional product (armored = 0) with a
  nominal day-0 dose of 1e8 cells/kg whose blood fraction f_blood is estimated per patient (the files carry
  no doses; only f_blood x dose matters), killing unsaturated over the observed range (K_k = 1e5, see the
  README), maximum a posteriori: first a population fit (SAEM) of both files together with random effects
  on rho, kappa and f_blood (delta_E and k_mem held), then each patient with that fit's typical values and
  omegas as priors, and IL10_NAMED_PRIORS for delta_E, k_mem and k_exh;
* with --maximum-likelihood, il10 the same way without priors (the like-for-like comparison of liu2022's
  maximum-likelihood fits).

liu2022 fits: per-patient maximum likelihood; all fits: proportional error with one residual SD per
observable pooled over the file's patients, values <= 0.2 censored (M3). Prints a Markdown table (patients,
converged, fits with identifiability warnings, median log10 RMSE per observable, total -log L, estimated
parameters, AIC), writes every fit's tables to OUTDIR/<file>_<fit>/, the population fits to OUTDIR/il10_population and
OUTDIR/liu2022_population, and the figures to examples/figures/liu2022_fit_CR.png and liu2022_fit_NR.png.
--free-sets also compares il10 free sets on CAR T alone (2, 3 and 4 parameters). Runs in about three minutes.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import cartkin  # noqa: E402
from cartkin.data import read_data  # noqa: E402
from cartkin.estimation import fit, fit_population  # noqa: E402
from cartkin.estimation.population.fit_file import priors_from_fit  # noqa: E402
from cartkin.stats.error_models import ProportionalError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {"time": "TIME", "y": "DV", "y_ID": "DVID"}
LIU_FREE = ("rTA0", "lTA0", "eBp", "nTN0")          # ka fixed at its published 0.65/d (see the README)
IL10_FREE = ("rho", "kappa", "delta_E")              # the CAR-T-only free sets (--free-sets)
IL10_DOSE = 1e6                                      # cells/kg on day 0, CAR-T-only fits
IL10_MAP_DOSE = 1e8                                  # nominal cells/kg on day 0: f_blood x dose is what is fitted
# held in every il10 fit to these data: a conventional product, killing unsaturated over the observed
# burdens (the population fit puts K_k at ~9e4 when free and -2LL falls 88 from K_k = 40), and, in the
# population fit only, delta_E and k_mem near the individual fits' medians (-2LL 2227 against 2234 at
# delta_E 0.45 and 2244 at the model's 0.16 and 0.02)
IL10_FIXED = {"armored": 0, "K_k": 1e5}
IL10_POPULATION_FIXED = {"delta_E": 0.3, "k_mem": 0.015}
IL10_POPULATION_FREE = ("rho", "kappa", "f_blood")
IL10_MAP_FREE = ("rho", "kappa", "f_blood", "delta_E", "k_mem", "k_exh")
# log-normal priors (median, SD of the log) for what the population fit held or did not estimate: delta_E
# and k_mem at the values it held, k_exh at il10's default; SDs wide enough for 3-fold (delta_E) and
# 7-fold (k_mem, k_exh) individual departures within one SD
IL10_NAMED_PRIORS = {"delta_E": (0.3, 0.5), "k_mem": (0.015, 1.0), "k_exh": (0.5, 1.0)}
IL10_FREE_SETS = (("rho", "delta_E"), IL10_FREE, ("rho", "kappa", "k_exh", "delta_E"))


def timed(**kwargs):
    """(fit result, seconds)."""
    start = time.perf_counter()
    result = fit(**kwargs)
    return result, time.perf_counter() - start


def il10_data(path, dvid_map=None):
    return read_data(path, "il10", dvid_map=dvid_map or {1: "car_blood", 2: "leukaemia"}, covariates={"Reg": "L0"},
                     censor_floor=0.2, column_map=COLUMNS, prefix_ids=isinstance(path, list))


def il10_population(paths: list[Path]):
    """The il10 population fit of both files together (its typical values and omegas are the MAP priors)."""
    return fit_population("il10", il10_data([str(p) for p in paths]), estimate=IL10_POPULATION_FREE,
                          fix={**IL10_FIXED, **IL10_POPULATION_FIXED},
                          regimen=cartkin.Regimen.single(dose_per_kg=IL10_MAP_DOSE), iterations=(300, 150),
                          chains=2)


def liu2022_population(paths: list[Path]):
    """liu2022's population fit of both files, the same free set as its individual fits (no covariate
    effect, like il10's): the priors of the like-for-like MAP comparison."""
    data = read_data([str(p) for p in paths], "liu2022", dvid_map={1: "nTA", 2: "nB"}, covariates={"Reg": "nB0"},
                     censor_floor=0.2, column_map=COLUMNS, prefix_ids=True)
    return fit_population("liu2022", data, estimate=LIU_FREE)


def fits_for(path: Path, il10_priors: dict, liu_priors: dict, maximum_likelihood: bool = False) -> dict:
    """The four fits of one file, by label: (result, seconds); with maximum_likelihood also il10 without
    priors (the like-for-like comparison of liu2022's maximum-likelihood fits)."""
    floor = dict(censor_floor=0.2, column_map=COLUMNS)
    liu_both = read_data(path, "liu2022", dvid_map={1: "nTA", 2: "nB"}, covariates={"Reg": "nB0"}, **floor)
    liu_car = read_data(path, "liu2022", dvid_map={1: "nTA", 2: "skip"}, covariates={"Reg": "nB0"}, **floor)
    fits = {
        "liu2022": timed(model="liu2022", data=liu_both, estimate=LIU_FREE, pooled_sigma=True),
        "liu2022 (CAR T only)": timed(model="liu2022", data=liu_car, estimate=LIU_FREE, pooled_sigma=True),
        "liu2022 (MAP)": timed(model="liu2022", data=liu_both, estimate=LIU_FREE, pooled_sigma=True,
                               priors=liu_priors),
        "il10 (MAP)": timed(model="il10", data=il10_data(path), estimate=IL10_MAP_FREE, pooled_sigma=True,
                            priors=il10_priors, fix=IL10_FIXED, starts=3,
                            regimen=cartkin.Regimen.single(dose_per_kg=IL10_MAP_DOSE)),
    }
    if maximum_likelihood:
        fits["il10 (ML)"] = timed(model="il10", data=il10_data(path), estimate=IL10_MAP_FREE, pooled_sigma=True,
                                  fix=IL10_FIXED, starts=4, regimen=cartkin.Regimen.single(dose_per_kg=IL10_MAP_DOSE))
    return fits


def log10_rmse(result) -> dict[str, float]:
    """Median over patients of the RMSE of log10(observed) - log10(predicted), uncensored points, per observable."""
    rows = result.predictions()
    out = {}
    for name in result.problem.observables:
        per_patient = []
        for sid in result.data.ids:
            mine = [r for r in rows if r["ID"] == sid and r["DVID"] == name and not r["CENS"]]
            if mine:
                d = [math.log10(r["DV"]) - math.log10(r["IPRED"]) for r in mine]
                per_patient.append(math.sqrt(sum(x * x for x in d) / len(d)))
        out[name] = float(np.median(per_patient))
    return out


def car_t_part(result, observable="nTA") -> float:
    """−log L of one observable's observations (CAR T by default) at a fit's estimates and pooled SD."""
    k = result.model.observables.index(observable)
    log_sigma = math.log(dict((n, v) for n, v, _ in result.pooled_sigma)[f"sigma_{observable}"])
    total = 0.0
    rows = result.predictions()
    for subject in result.data.subjects:
        pred = np.array([r["IPRED"] for r in rows if r["ID"] == subject.id])
        sel = subject.observable_index == k
        total += ProportionalError().negative_log_likelihood(pred[sel], subject.values[sel], subject.censored[sel],
                                                             subject.limits[sel], [math.exp(log_sigma)]).value
    return total


def neg_log_likelihood(result) -> float:
    """−log L of all observations at the fit's estimates and pooled SDs (for a MAP fit: without the priors,
    so its AIC compares with the maximum-likelihood fits'; the priors make it a little optimistic)."""
    return sum(car_t_part(result, name) for name in result.problem.observables)


def summary_row(name: str, label: str, result, seconds: float) -> dict:
    rmse = log10_rmse(result)
    car = "nTA" if "nTA" in rmse else "car_blood"
    return {"file": name, "fit": label, "patients": len(result.fits),
            "converged": sum(f.converged for f in result.fits),
            "warned": sum(bool(f.warnings) for f in result.fits),
            "rmse_car": rmse[car], "rmse_leuk": rmse.get("nB", rmse.get("leukaemia", math.nan)),
            "objective": neg_log_likelihood(result), "parameters": result.n_parameters,
            "aic": 2 * neg_log_likelihood(result) + 2 * result.n_parameters,
            "seconds": seconds}


# upper ends of a physiological range, for the printed estimate ranges: a T cell divides at most every ~6 h
# (proliferation rho, liu2022's rTA0 <= 3/d), an effector lives at least ~17 h on average (death delta_E,
# liu2022's lTA0 <= 1/d)
PHYSIOLOGICAL_MAX = {"rho": 3.0, "rTA0": 3.0, "delta_E": 1.0, "lTA0": 1.0}


def estimate_ranges(name: str, label: str, result) -> str:
    """One line per fit: each estimated parameter's range over the patients, and the patients whose
    estimates leave PHYSIOLOGICAL_MAX."""
    names = list(result.model.parameter_names)
    parts, outside = [], []
    for p in result.free:
        values = [f.parameters[names.index(p)] for f in result.fits]
        parts.append(f"{p} {min(values):.3g}–{max(values):.3g}")
        limit = PHYSIOLOGICAL_MAX.get(p)
        if limit is not None:
            outside += [f"{name} {f.id}: {p} {v:.3g}" for f, v in zip(result.fits, values) if v > limit]
    return f"{name} {label}: " + ", ".join(parts) + ("; above a physiological maximum: " + ", ".join(outside)
                                                       if outside else "; all within physiological maxima")


def markdown(rows) -> str:
    lines = ["| file | fit | patients | converged | with warnings | median log10 RMSE CAR T | "
             "median log10 RMSE leukaemia | −log L | parameters | AIC |", "|" + "---|" * 10]
    for r in rows:
        leuk = "–" if math.isnan(r["rmse_leuk"]) else f"{r['rmse_leuk']:.2f}"
        lines.append(f"| {r['file']} | {r['fit']} | {r['patients']} | {r['converged']} | {r['warned']} | "
                     f"{r['rmse_car']:.2f} | {leuk} | {r['objective']:.1f} | {r['parameters']} | {r['aic']:.1f} |")
    return "\n".join(lines)


def figure(results: dict, path: Path, name: str) -> Path:
    """One panel per patient of a file: CAR T and leukaemia data, liu2022 (joint fit) and il10 curves."""
    liu, il10 = results["liu2022"], results["il10 (MAP)"]
    n = len(liu.fits)
    cols = 4
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows + 0.8), squeeze=False, sharey=True)
    regimen = cartkin.Regimen.single(dose_per_kg=IL10_MAP_DOSE)
    for ax, f_liu, f_il10, subject in zip(axes.flat, liu.fits, il10.fits, liu.data.subjects):
        grid = np.linspace(0.0, max(subject.times.max() * 1.05, 30.0), 300)
        for k, (obs, colour) in enumerate((("nTA", "#2166ac"), ("nB", "#d6604d"))):
            sel = subject.observable_index == liu.model.observables.index(obs)
            seen, cens = sel & ~subject.censored, sel & subject.censored
            label = "CAR T (cells/µL)" if obs == "nTA" else "leukaemia (nB)"
            ax.plot(subject.times[seen], subject.values[seen], "o", ms=3.5, color=colour, label=label)
            ax.plot(subject.times[cens], subject.limits[cens], "v", ms=4, mfc="none", color=colour)
            sim = cartkin.simulate(liu.model, None, grid, dict(zip(liu.model.parameter_names, f_liu.parameters)))
            ax.plot(grid, sim.observable(obs), color=colour, lw=1.3,
                    label="liu2022 fit" if k == 0 else None)
        sim = cartkin.simulate(il10.model, regimen, grid, dict(zip(il10.model.parameter_names, f_il10.parameters)))
        ax.plot(grid, sim.observable("car_blood"), "--", color="#2166ac", lw=1.3, label="il10 fit")
        ax.plot(grid, sim.observable("leukaemia"), "--", color="#d6604d", lw=1.3)
        ax.set_yscale("log")
        ax.set_ylim(0.05, 1e6)
        flag = "" if f_liu.converged and f_il10.converged else " (not converged)"
        ax.set_title(f"{name} patient {subject.id}{flag}", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("days after infusion", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("cells/µL (log)", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], marker="v", ls="none", mfc="none", color="#555555"))
    labels.append("below the 0.2 floor (censored)")
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9)
    who = "complete-remission patients" if name == "CR" else "non-responders"
    fig.suptitle(f"Liu 2022 {who}: data (● observed, ▽ below 0.2), liu2022 fitted to CAR T and leukaemia "
                 "(solid), il10 (dashed, maximum a posteriori with population priors)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "liu2022"),
                        help="folder with Data_CR.csv and Data_NR.csv (default ../shared/data/liu2022)")
    parser.add_argument("-o", "--outdir", default="liu2022-fits", help="where each fit's tables go")
    parser.add_argument("--figures", default=str(ROOT / "examples" / "figures"),
                        help="folder of liu2022_fit_CR.png and liu2022_fit_NR.png")
    parser.add_argument("--free-sets", action="store_true", help="also compare il10 free sets")
    parser.add_argument("--maximum-likelihood", action="store_true",
                        help="also fit il10 without priors (as liu2022's maximum-likelihood fits; ~3 more minutes)")
    args = parser.parse_args()
    data = Path(args.data)
    missing = [f"Data_{name}.csv" for name in ("CR", "NR") if not (data / f"Data_{name}.csv").is_file()]
    if missing:
        raise SystemExit(f"fit_liu2022: {', '.join(missing)} not found in {data}; pass --data FOLDER")
    start = time.perf_counter()
    population = il10_population([data / "Data_CR.csv", data / "Data_NR.csv"])
    print(population)
    print(f"il10 population fit: {time.perf_counter() - start:.1f} s")
    # the priors: each population fit's typical values and sqrt(omega²), read back from its folder as
    # `cartkin fit --prior FOLDER` reads them
    il10_folder, liu_folder = Path(args.outdir) / "il10_population", Path(args.outdir) / "liu2022_population"
    cartkin.write(population, il10_folder)
    il10_priors = {**priors_from_fit(il10_folder, IL10_POPULATION_FREE), **IL10_NAMED_PRIORS}
    liu_population = liu2022_population([data / "Data_CR.csv", data / "Data_NR.csv"])
    print(liu_population)
    cartkin.write(liu_population, liu_folder)
    liu_priors = priors_from_fit(liu_folder, LIU_FREE)
    rows, extra = [], []
    for name in ("CR", "NR"):
        path = data / f"Data_{name}.csv"
        timed_results = fits_for(path, il10_priors, liu_priors, args.maximum_likelihood)
        results = {label: result for label, (result, _) in timed_results.items()}
        for label, (result, seconds) in timed_results.items():
            rows.append(summary_row(name, label, result, seconds))
            if "CAR T only" not in label:
                extra.append(estimate_ranges(name, label, result))
            suffix = "_car" if "only" in label else "_map" if "MAP" in label else "_ml" if "ML" in label else ""
            cartkin.write(result, Path(args.outdir) / f"{name}_{label.split()[0]}{suffix}")
        joint = results["liu2022"]
        part = car_t_part(joint)
        n_car = len(joint.fits) * len(LIU_FREE) + 1
        extra.append(f"{name}: liu2022 joint fit, CAR T observations only: −log L {part:.1f}, AIC "
                     f"{2 * part + 2 * n_car:.1f} counting every structural parameter and sigma_nTA ({n_car})")
        print("figure ->", figure(results, Path(args.figures) / f"liu2022_fit_{name}.png", name))
        if args.free_sets:
            il10_car = il10_data(path, {1: "car_blood", 2: "skip"})
            for free in IL10_FREE_SETS:
                result, seconds = timed(model="il10", data=il10_car, estimate=free, pooled_sigma=True,
                                        fix={"armored": 0}, regimen=cartkin.Regimen.single(dose_per_kg=IL10_DOSE))
                rows.append(summary_row(name, f"il10 {', '.join(free)}", result, seconds))
    print(markdown(rows))
    print()
    print("\n".join(extra))
    print("\nseconds per fit (all patients of the file, pooled SDs): " +
          ", ".join(f"{r['file']} {r['fit']} {r['seconds']:.1f}" for r in rows))


if __name__ == "__main__":
    main()
