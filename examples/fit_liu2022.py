"""Fit the real B-ALL CAR T kinetics of Liu et al. 2022 with liu2022 and il10: the numbers and the figure of
the README's "Real data (Liu 2022)" section.

    python examples/fit_liu2022.py [--data ../shared/data/liu2022] [-o liu2022-fits] [--free-sets]

For each file (Data_CR.csv: 14 patients in continuous remission, Data_NR.csv: 7 non-responders):

* liu2022 on CAR T (DVID 1 -> nTA) and leukaemia (DVID 2 -> nB), Reg -> nB0;
* liu2022 on the CAR T rows only (DVID 2 skipped), the like-for-like comparison with il10;
* il10 on CAR T (DVID 1 -> car_blood) and leukaemia (DVID 2 -> leukaemia, the CD19+ cells L: the same blast
  relation as liu2022's nB, so the same units), Reg -> L0, a conventional product (armored = 0) with a
  nominal day-0 dose of 1e6 cells/kg whose blood fraction f_blood is estimated per patient (the files carry
  no doses; only f_blood x dose matters), maximum a posteriori with the priors IL10_PRIORS (see the README).

All fits: per-patient maximum likelihood, proportional error with one residual SD per observable pooled
over the file's patients, values <= 0.2 censored (M3). Prints a Markdown table (patients, converged, fits
with identifiability warnings, median log10 RMSE per observable, total -log L, estimated parameters, AIC),
writes every fit's tables to OUTDIR/<file>_<fit>/ and the CR figure to examples/figures/liu2022_fit_CR.png.
--free-sets also compares il10 free sets (2, 3 and 4 parameters). Runs in about two minutes.
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
from cartkin.estimation import fit  # noqa: E402
from cartkin.stats.error_models import ProportionalError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {"time": "TIME", "y": "DV", "y_ID": "DVID"}
LIU_FREE = ("rTA0", "lTA0", "eBp", "nTN0")          # ka fixed at its published 0.65/d (see the README)
IL10_FREE = ("rho", "kappa", "delta_E")              # the CAR-T-only free sets (--free-sets)
IL10_DOSE = 1e6                                      # cells/kg on day 0, CAR-T-only fits
IL10_MAP_FREE = ("rho", "kappa", "delta_E", "f_blood")
IL10_MAP_DOSE = 1e6                                  # nominal cells/kg on day 0: f_blood x dose is what is fitted
# log-normal priors (median, SD of the log) around il10's defaults, wide (kappa and f_blood 1.5 and 2: a
# 20- and 50-fold 95% range); with a nominal 1e8 and priors centred on the il10 SAEM (kappa 2.5, f_blood
# 0.005) the NR fits improve (README) but the CR file's optimisation becomes very slow
IL10_PRIORS = {"rho": (1.0, 1.0), "kappa": (60.0, 1.5), "delta_E": (0.16, 0.7), "f_blood": (0.02, 2.0)}
IL10_FREE_SETS = (("rho", "delta_E"), IL10_FREE, ("rho", "kappa", "k_exh", "delta_E"))


def timed(**kwargs):
    """(fit result, seconds)."""
    start = time.perf_counter()
    result = fit(**kwargs)
    return result, time.perf_counter() - start


def fits_for(path: Path, il10_free=IL10_FREE) -> dict:
    """The three fits of one file, by label: (result, seconds)."""
    floor = dict(censor_floor=0.2, column_map=COLUMNS)
    liu_both = read_data(path, "liu2022", dvid_map={1: "nTA", 2: "nB"}, covariates={"Reg": "nB0"}, **floor)
    liu_car = read_data(path, "liu2022", dvid_map={1: "nTA", 2: "skip"}, covariates={"Reg": "nB0"}, **floor)
    il10_both = read_data(path, "il10", dvid_map={1: "car_blood", 2: "leukaemia"}, covariates={"Reg": "L0"},
                          **floor)
    il10 = dict(fix={"armored": 0}, regimen=cartkin.Regimen.single(dose_per_kg=IL10_MAP_DOSE))
    return {
        "liu2022": timed(model="liu2022", data=liu_both, estimate=LIU_FREE, pooled_sigma=True),
        "liu2022 (CAR T only)": timed(model="liu2022", data=liu_car, estimate=LIU_FREE, pooled_sigma=True),
        "il10 (MAP)": timed(model="il10", data=il10_both, estimate=IL10_MAP_FREE, pooled_sigma=True,
                            priors=IL10_PRIORS, **il10),
    }


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


def markdown(rows) -> str:
    lines = ["| file | fit | patients | converged | with warnings | median log10 RMSE CAR T | "
             "median log10 RMSE leukaemia | −log L | parameters | AIC |", "|" + "---|" * 10]
    for r in rows:
        leuk = "–" if math.isnan(r["rmse_leuk"]) else f"{r['rmse_leuk']:.2f}"
        lines.append(f"| {r['file']} | {r['fit']} | {r['patients']} | {r['converged']} | {r['warned']} | "
                     f"{r['rmse_car']:.2f} | {leuk} | {r['objective']:.1f} | {r['parameters']} | {r['aic']:.1f} |")
    return "\n".join(lines)


def figure(results: dict, path: Path) -> Path:
    """One panel per CR patient: CAR T and leukaemia data, liu2022 (joint fit) and il10 curves."""
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
        ax.set_title(f"CR patient {subject.id}{flag}", fontsize=9)
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
    fig.suptitle("Liu 2022 complete-remission patients: data (● observed, ▽ below 0.2), liu2022 fitted to CAR T "
                 "and leukaemia (solid), il10 (dashed, maximum a posteriori)", fontsize=10)
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
    parser.add_argument("--figure", default=str(ROOT / "examples" / "figures" / "liu2022_fit_CR.png"))
    parser.add_argument("--free-sets", action="store_true", help="also compare il10 free sets")
    args = parser.parse_args()
    data = Path(args.data)
    missing = [f"Data_{name}.csv" for name in ("CR", "NR") if not (data / f"Data_{name}.csv").is_file()]
    if missing:
        raise SystemExit(f"fit_liu2022: {', '.join(missing)} not found in {data}; pass --data FOLDER")
    rows, extra = [], []
    for name in ("CR", "NR"):
        path = data / f"Data_{name}.csv"
        timed_results = fits_for(path)
        results = {label: result for label, (result, _) in timed_results.items()}
        for label, (result, seconds) in timed_results.items():
            rows.append(summary_row(name, label, result, seconds))
            cartkin.write(result, Path(args.outdir) / f"{name}_{label.split()[0]}{'_car' if 'only' in label else ''}")
        joint = results["liu2022"]
        part = car_t_part(joint)
        n_car = len(joint.fits) * len(LIU_FREE) + 1
        extra.append(f"{name}: liu2022 joint fit, CAR T observations only: −log L {part:.1f}, AIC "
                     f"{2 * part + 2 * n_car:.1f} counting every structural parameter and sigma_nTA ({n_car})")
        if name == "CR":
            print("figure ->", figure(results, Path(args.figure)))
        if args.free_sets:
            il10_car = read_data(path, "il10", dvid_map={1: "car_blood", 2: "skip"}, covariates={"Reg": "L0"},
                                 censor_floor=0.2, column_map=COLUMNS)
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
