"""Result files: the CSV, Markdown and JSON that each kind of result writes into an output folder.

=====================  ==========================================================================================
individual fit         estimates.csv (estimates, SEs, 95% intervals, profile intervals, warnings),
                       predictions.csv (ID, TIME, DVID, DV, CENS, IPRED, IWRES), correlations.csv, profiles.csv
population fit         population.csv (typical values, covariate coefficients, ω² with CV%, covariances,
                       residual σ's: estimate, SE, RSE%, 95% interval, η-shrinkage), individuals.csv
                       (conditional modes and means, η modes, covariates, log-likelihood), predictions.csv
                       (DV, PRED, IPRED, IWRES), convergence.csv (the parameters at every SAEM iteration),
                       fit.json (everything `cartkin vpc` and scenario files need; read back by `load_fit`)
VPC                    vpc.csv or pcvpc.csv (per observable and bin: observed percentiles and the simulated
                       intervals, fractions below the limit)
comparison             summary.csv, summary.md, patients.csv (per-patient outcomes); with [trial] replicates
                       also trials.csv (one row per replicate and arm) and trials_summary.csv (per arm and
                       statistic: quantiles over replicates, P(at least as good as observed) and its SE)
=====================  ==========================================================================================
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Sequence

from ..estimation.individual.profile import Profile
from ..estimation.individual.results import FitResult
from ..estimation.population.fit_file import FIT_FILE, file_sha256, fit_json, json_default
from ..estimation.population.results import PopulationResult
from ..estimation.population.vpc import VpcResult
from ..scenario.compare import Comparison
from ..table import Table


def write_fit(result: FitResult, outdir: Path) -> list[Path]:
    """estimates.csv, predictions.csv, correlations.csv (and profiles.csv) of an individual fit."""
    result.estimates_table().to_csv(outdir / "estimates.csv")
    rows = result.predictions()
    with open(outdir / "predictions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    with open(outdir / "correlations.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ID", "parameter", "with", "correlation"])
        for fit in result.fits:  # of the log-scale estimates, from the observed information
            for a in range(len(fit.names)):
                for b in range(a + 1, len(fit.names)):
                    writer.writerow([fit.id, fit.names[a], fit.names[b], f"{fit.correlation[a, b]:.4g}"])
    files = [outdir / "estimates.csv", outdir / "predictions.csv", outdir / "correlations.csv"]
    if result.profiles:
        files.append(write_profiles(result.profiles, outdir / "profiles.csv"))
    return files


def write_profiles(profiles: Sequence[Profile], path) -> Path:
    """profiles.csv: ID, parameter, value, objective (−log L with the other parameters re-optimised)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ID", "parameter", "value", "objective"])
        for pr in profiles:
            for value, objective in zip(pr.values, pr.objectives):
                writer.writerow([pr.id, pr.parameter, f"{value:.8g}", f"{objective:.10g}"])
    return path



def write_population_fit(result: PopulationResult, outdir: Path) -> list[Path]:
    """population.csv, individuals.csv, predictions.csv, convergence.csv and fit.json."""
    files = []
    result.population_table().to_csv(outdir / "population.csv")
    files.append(outdir / "population.csv")
    for name, rows in (("individuals.csv", result.individual_rows()), ("predictions.csv", result.predictions())):
        write_rows(outdir / name, rows)
        files.append(outdir / name)
    trace_rows = [{"iteration": k + 1, **dict(zip(result.parameter_names, map(float, row)))}
                  for k, row in enumerate(result.traces)]
    write_rows(outdir / "convergence.csv", trace_rows)
    files.append(outdir / "convergence.csv")
    info = fit_json(result)
    if info["data"] is None:
        # data built in memory: keep them in standard columns so `cartkin vpc` can read them back
        result.pm.data.to_csv(outdir / "data.csv")
        files.append(outdir / "data.csv")
        info["data"] = {"files": ["data.csv"], "relative_to_fit": True, "sha256": [file_sha256(outdir / "data.csv")],
                        "options": {"covariates": {c: c for c in result.pm.data.covariate_names},
                                    "baseline": "keep"}}
    (outdir / FIT_FILE).write_text(json.dumps(info, indent=1, default=json_default), encoding="utf-8")
    files.append(outdir / FIT_FILE)
    return files


def write_vpc(result: VpcResult, outdir: Path) -> list[Path]:
    """vpc.csv (pcvpc.csv when prediction-corrected)."""
    path = outdir / ("pcvpc.csv" if result.prediction_corrected else "vpc.csv")
    write_rows(path, result.rows())
    return [path]


def write_comparison(comparison: Comparison, outdir: Path) -> list[Path]:
    """summary.csv, summary.md and patients.csv (per-patient outcomes)."""
    table = comparison.summary
    table.to_csv(outdir / "summary.csv")
    (outdir / "summary.md").write_text(markdown_report(comparison, table), encoding="utf-8")
    write_patients(comparison, outdir / "patients.csv")
    files = [outdir / "summary.csv", outdir / "summary.md", outdir / "patients.csv"]
    if comparison.trials is not None:
        write_rows(outdir / "trials.csv", comparison.trials.rows())
        write_rows(outdir / "trials_summary.csv", comparison.trials.summary_rows())
        files += [outdir / "trials.csv", outdir / "trials_summary.csv"]
    return files


def markdown_report(comparison: Comparison, table: Table) -> str:
    """summary.md: the scenario, the summary table and one paragraph per outcome defining it."""
    s = comparison.scenario
    lines = [f"# {s.name}", "", s.description, "",
             f"Model `{s.model.name}`, {s.population.n} virtual patients (seed {s.population.seed}), "
             f"horizon {s.horizon:g} days. Medians with 5–95% ranges."
             + (f" Typical values and variability from the population fit in `{s.population.from_fit}`."
                if s.population.from_fit else ""), ""]
    if s.provenance:
        lines += [f"Provenance: {s.provenance}", ""]
    lines += [table.to_markdown(), ""]
    lines += [outcome.text(settings, s) for outcome, settings in s.outcomes]
    for res in comparison.arms:
        if res.failures:
            lines.append(f"Arm {res.arm.name}: solver failures {res.failures} (excluded from the summary).")
    if comparison.trials is not None:
        lines += ["", *trials_section(comparison.trials)]
    return "\n".join(lines) + "\n"


def trials_section(trials) -> list[str]:
    """summary.md's section on the trial replicates: the per-arm table and how to read it."""
    s, R, size = trials.scenario, trials.replicates, trials.size
    uncertainty = s.population.uncertainty
    lines = ["## Trial replicates", "",
             f"{R} trials of {size} patients per arm, each drawn afresh from the virtual population (patient j of "
             f"trial r is subject r·2^24 + j of seed {s.population.seed}; every arm of a trial treats the same "
             "patients)"
             + (f", with the typical values and CV% of calibration draw r mod {len(uncertainty)} of "
                f"`{s.population.uncertainty_path}`." if uncertainty else "; the population parameters are the "
                "scenario's in every trial (no calibration uncertainty given)."), "",
             trials.table().to_markdown(), ""]
    if trials.observed:
        lines.append("P(...): the fraction of trials at least as good as the observed result, ± its Monte-Carlo "
                     f"standard error sqrt(P(1 − P)/{R})" + ("; P(all observed): every observed result at once"
                                                             if len(trials.observed) > 1 else "") + ".")
        lines.append("")
        for res_arm in trials.values:
            for item in trials.observed:
                if trials.probability(res_arm, item)[0] == 0:
                    lines.append(f"{res_arm}: no trial reached {item.describe(size)} (P below about {3 / R:.3g}, "
                                 f"the 95% bound for 0 of {R}).")
                    lines.append("")
    lines.append("Counts per trial (x of the trial size) are in trials.csv; RFS resp.: relapse-free at that day "
                 "among the trial's responders; a patient whose solve failed counts in no outcome.")
    return lines


def write_patients(comparison: Comparison, path: Path) -> None:
    """patients.csv: one row per arm and patient, every outcome (dose_per_kg: only arms with a dose
    distribution fill it; coded columns such as relapse_type written as words)."""
    names = list(dict.fromkeys(k for res in comparison.arms for k in res.outcomes))
    words = {}  # columns stored as codes, written as words (e.g. relapse_type: cd19neg / cd19pos / empty)
    for outcome, _ in comparison.scenario.outcomes:
        words.update(outcome.labels)

    def cell(res, name: str, i: int) -> str:
        if name not in res.outcomes:
            return ""
        value = res.outcomes[name][i]
        if name in words:
            return words[name].get(float(value), "")
        return f"{value:.6g}"

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arm", "patient", "ok", *names])
        for res in comparison.arms:
            for i in range(res.ok.size):
                writer.writerow([res.arm.name, i + 1, int(res.ok[i]),
                                 *(cell(res, k, i) for k in names)])



def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                                 f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})

