"""Results of a population (SAEM) fit: estimates with standard errors, tables, files, and reloading a fit.

Files written by `PopulationResult.write(outdir)`:

=================  ======================================================================================
population.csv     typical values, covariate coefficients, ω² (with CV%), covariances, residual σ's:
                   estimate, SE, RSE%, 95% interval; η-shrinkage per random effect
individuals.csv    per subject: conditional mode (EBE) and conditional mean of each parameter, η modes,
                   covariates, log-likelihood contribution
predictions.csv    ID, TIME, DVID, DV, CENS, PRED (typical, η = 0), IPRED (at the mode), IWRES
convergence.csv    the population parameters at every SAEM iteration
fit.json           everything `cartkin vpc` and scenario files need: model, settings, estimates (Ω in
                   full), covariate effects and references, data files and how they were read
=================  ======================================================================================

`load_fit(fitdir)` reads fit.json back (and, with ``with_data=True``, the data) as a `LoadedFit`.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import CartkinError
from .population_model import CovariateEffect, PopulationModel, transformed_residuals
from .saem import PopulationEstimates, trace_names

Z95 = 1.959963984540054
FIT_FILE = "fit.json"
FORMAT = "cartkin-population-fit-1"
DRIFT_LIMIT = 1.5  # |mean difference of the two halves of the late exploratory window| / its SD (and > SE)


@dataclass(eq=False)
class PopulationResult:
    """`cartkin.fit_population` output. Arrays are in the order of `pm.parameters` (q) and subjects."""
    pm: PopulationModel
    estimates: PopulationEstimates
    omega_structure: str
    traces: np.ndarray
    settings: dict
    conditional_mean: np.ndarray
    conditional_cov: np.ndarray
    modes: np.ndarray
    mode_ok: np.ndarray
    ofv: float
    ofv_se: float
    subject_loglik: np.ndarray
    information: np.ndarray
    covariance: np.ndarray | None
    fim_message: str
    data_source: dict | None = None
    timings: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    converged: bool = False

    def __post_init__(self):
        self.warnings, self.converged = self._assess()

    # --- numbers ------------------------------------------------------------------------------------
    @property
    def parameter_names(self) -> list[str]:
        """Names of the estimated population parameters, in the order of the packed vector / SEs."""
        return trace_names(self.pm, self.omega_structure)

    @property
    def n_estimated(self) -> int:
        return len(self.parameter_names)

    @property
    def typical(self) -> dict[str, float]:
        """Typical values (at the reference covariates)."""
        q = self.pm.n_parameters
        return {p: float(math.exp(v)) for p, v in zip(self.pm.parameters, self.estimates.fixed_effects[:q])}

    @property
    def coefficients(self) -> dict[str, float]:
        q = self.pm.n_parameters
        return {e.name: float(b) for e, b in zip(self.pm.effects, self.estimates.fixed_effects[q:])}

    @property
    def omega(self) -> np.ndarray:
        return self.estimates.omega

    @property
    def sigma(self) -> dict[str, float]:
        return dict(zip(self.pm.sigma_names, map(float, self.estimates.sigma)))

    @property
    def aic(self) -> float:
        return self.ofv + 2 * self.n_estimated

    @property
    def bic(self) -> float:
        """−2LL + k log(N subjects) (the Monolix convention)."""
        return self.ofv + self.n_estimated * math.log(self.pm.data.n_subjects)

    def packed(self) -> np.ndarray:
        """Population parameters in the order of `parameter_names` (μ on the log scale)."""
        q = self.pm.n_parameters
        omega = np.diag(self.omega) if self.omega_structure == "diag" else self.omega[np.tril_indices(q)]
        return np.concatenate([self.estimates.fixed_effects, omega, self.estimates.sigma])

    @property
    def standard_errors(self) -> np.ndarray:
        """SEs in the order of `parameter_names`; for typical values on the natural scale (delta method)."""
        n = self.n_estimated
        if self.covariance is None:
            return np.full(n, np.nan)
        se = np.sqrt(np.clip(np.diag(self.covariance), 0, None))
        q = self.pm.n_parameters
        se[:q] = se[:q] * np.exp(self.estimates.fixed_effects[:q])
        return se

    @property
    def eta_modes(self) -> np.ndarray:
        return self.modes - self.pm.mean_phi(self.estimates.fixed_effects)

    @property
    def shrinkage(self) -> np.ndarray:
        """η-shrinkage per random effect, 1 − SD(η modes) / ω (NONMEM's SD-based definition)."""
        omega_sd = np.sqrt(np.diag(self.omega))
        return 1.0 - np.std(self.eta_modes, axis=0, ddof=1) / omega_sd if self.pm.data.n_subjects > 1 \
            else np.full(self.pm.n_parameters, np.nan)

    def _assess(self) -> tuple[tuple[str, ...], bool]:
        warnings = []
        ok = bool(np.all(np.isfinite(self.packed())))
        if not ok:
            warnings.append("non-finite estimates")
        if self.fim_message:
            warnings.append(self.fim_message)
        if self.covariance is None:
            ok = False
        if not math.isfinite(self.ofv):
            warnings.append("importance sampling gave a non-finite likelihood")
            ok = False
        bad_modes = [s.id for s, good in zip(self.pm.data.subjects, self.mode_ok) if not good]
        if bad_modes:
            warnings.append(f"no conditional mode for subject(s) {', '.join(bad_modes[:5])}")
        k1 = int(self.settings["iterations"][0])
        names = self.parameter_names
        window = self.traces[k1 // 2:k1]
        if window.shape[0] >= 8:
            half = window.shape[0] // 2
            sd = window.std(axis=0)
            change = np.abs(window[half:].mean(axis=0) - window[:half].mean(axis=0))
            with np.errstate(divide="ignore", invalid="ignore"):
                drift = change / sd
            # a drift counts when it is large against the trace's noise and against the estimate's SE
            se = self.standard_errors
            drifting = (drift > DRIFT_LIMIT) & ~(change < se)
            omega_cols = [j for j, nm in enumerate(names) if nm.startswith("omega2_")]
            for j in np.flatnonzero(drifting):
                if j in omega_cols and window[-1, j] < window[0, j] and window[-1, j] < 0.01:
                    continue  # reported below as a vanishing random effect
                warnings.append(f"{names[j]} still drifting at the end of the exploratory phase (increase K1)")
                ok = False
        for p, w in zip(self.pm.parameters, np.diag(self.omega)):
            if w < 0.01:
                warnings.append(f"omega2_{p} = {w:.2g}: the data barely support a random effect on {p}")
        return tuple(warnings), ok

    @property
    def message(self) -> str:
        return "converged" if self.converged and not self.warnings else "; ".join(self.warnings) or "converged"

    # --- tables -------------------------------------------------------------------------------------
    def population_rows(self) -> list[dict]:
        """One row per population parameter: estimate, SE, RSE%, 95% interval, CV% and shrinkage."""
        pm = self.pm
        q = pm.n_parameters
        names = self.parameter_names
        se = self.standard_errors
        values = self.packed().copy()
        values[:q] = np.exp(values[:q])
        shrink = dict(zip(pm.parameters, self.shrinkage))
        rows = []
        for j, name in enumerate(names):
            est, s = float(values[j]), float(se[j])
            row = {"parameter": name, "kind": "", "estimate": est, "se": s,
                   "rse_pct": abs(s / est) * 100 if est != 0 and math.isfinite(s) else math.nan,
                   "lower": math.nan, "upper": math.nan, "cv_pct": math.nan, "shrinkage_pct": math.nan}
            if j < q:
                row["kind"] = "typical value"
                phi_se = s / est if est > 0 else math.nan
                row["lower"], row["upper"] = est * math.exp(-Z95 * phi_se), est * math.exp(Z95 * phi_se)
            else:
                row["lower"], row["upper"] = est - Z95 * s, est + Z95 * s
                if j < pm.n_fixed_effects:
                    row["kind"] = "covariate coefficient"
                elif name.startswith("omega2_"):
                    row["kind"] = "omega2 (variance of eta)"
                    row["cv_pct"] = math.sqrt(math.expm1(est)) * 100
                    row["shrinkage_pct"] = shrink[name[len("omega2_"):]] * 100
                    row["lower"] = max(row["lower"], 0.0)
                elif name.startswith("cov_"):
                    row["kind"] = "covariance of etas"
                else:
                    row["kind"] = "residual error"
            rows.append(row)
        if self.omega_structure == "full":
            sd = np.sqrt(np.diag(self.omega))
            for a in range(q):
                for b in range(a):
                    rows.append({"parameter": f"corr_{pm.parameters[b]}_{pm.parameters[a]}", "kind": "correlation",
                                 "estimate": float(self.omega[a, b] / (sd[a] * sd[b])), "se": math.nan,
                                 "rse_pct": math.nan, "lower": math.nan, "upper": math.nan, "cv_pct": math.nan,
                                 "shrinkage_pct": math.nan})
        return rows

    def population_table(self):
        from ..report.table import Table, format_number

        def interval(r):
            if not math.isfinite(r["se"]):
                return format_number(r["estimate"])
            return f"{format_number(r['estimate'])} [{format_number(r['lower'])}, {format_number(r['upper'])}]"
        display = (("parameter", "parameter"), ("estimate [95% CI]", interval), ("RSE%", "rse_pct"),
                   ("CV%", "cv_pct"), ("shrinkage%", "shrinkage_pct"))
        rows = self.population_rows()
        title = (f"{self.pm.model.name}: population estimates (SAEM, {self.pm.data.n_subjects} subjects, "
                 f"{self.pm.error} error, {self.omega_structure} omega); -2LL {self.ofv:.2f} "
                 f"(IS SE {self.ofv_se:.2f}), AIC {self.aic:.2f}, BIC {self.bic:.2f}")
        return Table(tuple(rows[0].keys()), tuple(rows), display, title)

    def individual_rows(self) -> list[dict]:
        pm = self.pm
        rows = []
        eta = self.eta_modes
        for i, s in enumerate(pm.data.subjects):
            row = {"ID": s.id}
            for j, p in enumerate(pm.parameters):
                row[p] = float(np.exp(self.modes[i, j]))
            for j, p in enumerate(pm.parameters):
                row[f"{p}_mean"] = float(np.exp(self.conditional_mean[i, j]))
            for j, p in enumerate(pm.parameters):
                row[f"eta_{p}"] = float(eta[i, j])
            for c in pm.data.covariate_names:
                row[c] = s.covariates.get(c, math.nan)
            row["loglik"] = float(self.subject_loglik[i])
            rows.append(row)
        return rows

    def predictions(self) -> list[dict]:
        """Rows (ID, TIME, DVID, DV, CENS, PRED, IPRED, IWRES) for every observation."""
        pm = self.pm
        n = pm.data.n_subjects
        design = pm.design(np.arange(n))
        pred, _ = design.predict(pm.mean_phi(self.estimates.fixed_effects))
        ipred, _ = design.predict(self.modes)
        s1, s2 = pm.sigma_per_observation(self.estimates.sigma, design.slot)
        sd = s1 if pm.error != "combined" else np.sqrt(s1 ** 2 + (s2 * ipred) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            iwres = transformed_residuals(pm.error, ipred, design.y) / sd
        iwres = np.where(design.censored | ~np.isfinite(iwres), np.nan, iwres)
        rows = []
        for k in range(design.y.size):
            rows.append({"ID": pm.data.subjects[design.row[k]].id, "TIME": float(design.times[k]),
                         "DVID": pm.model.observables[design.column[k]],
                         "DV": float(design.limit[k] if design.censored[k] else design.y[k]),
                         "CENS": int(design.censored[k]), "PRED": float(pred[k]), "IPRED": float(ipred[k]),
                         "IWRES": float(iwres[k])})
        return rows

    def __str__(self) -> str:
        lines = [str(self.population_table())]
        lines.append(f"\n{'converged' if self.converged else 'NOT CONVERGED'}"
                     + (f": {'; '.join(self.warnings)}" if self.warnings else ""))
        return "\n".join(lines)

    # --- files --------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        pm = self.pm
        return {
            "format": FORMAT,
            "model": pm.model.name,
            "parameters": list(pm.parameters),
            "fixed": pm.fixed,
            "error": pm.error,
            "observables": list(pm.observables),
            "omega_structure": self.omega_structure,
            "covariate_effects": [{"parameter": e.parameter, "covariate": e.covariate, "kind": e.kind,
                                   "reference": e.reference} for e in pm.effects],
            "estimates": {
                "typical": self.typical,
                "coefficients": self.coefficients,
                "omega": self.omega.tolist(),
                "sigma": self.sigma,
                "fixed_effects": self.estimates.fixed_effects.tolist(),
            },
            "standard_errors": dict(zip(self.parameter_names, _json_numbers(self.standard_errors))),
            "likelihood": {"minus2loglik": self.ofv, "importance_sampling_se": self.ofv_se, "aic": self.aic,
                           "bic": self.bic, "n_estimated": self.n_estimated,
                           "n_subjects": pm.data.n_subjects, "n_observations": pm.data.n_observations},
            "converged": self.converged,
            "warnings": list(self.warnings),
            "settings": self.settings,
            "solver": {"rtol": pm.solver.rtol, "atol": pm.solver.atol},
            "regimen": _regimen_json(pm.regimen),
            "data": self.data_source,
            "timings_seconds": self.timings,
        }

    def write(self, outdir) -> list[Path]:
        """population.csv, individuals.csv, predictions.csv, convergence.csv and fit.json in outdir."""
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        files = []
        self.population_table().to_csv(outdir / "population.csv")
        files.append(outdir / "population.csv")
        for name, rows in (("individuals.csv", self.individual_rows()), ("predictions.csv", self.predictions())):
            _write_rows(outdir / name, rows)
            files.append(outdir / name)
        trace_rows = [{"iteration": k + 1, **dict(zip(self.parameter_names, map(float, row)))}
                      for k, row in enumerate(self.traces)]
        _write_rows(outdir / "convergence.csv", trace_rows)
        files.append(outdir / "convergence.csv")
        info = self.to_json()
        if info["data"] is None:
            # data built in memory: keep them in standard columns so `cartkin vpc` can read them back
            self.pm.data.to_csv(outdir / "data.csv")
            files.append(outdir / "data.csv")
            info["data"] = {"files": ["data.csv"], "relative_to_fit": True,
                            "options": {"covariates": {c: c for c in self.pm.data.covariate_names},
                                        "baseline": "keep"}}
        (outdir / FIT_FILE).write_text(json.dumps(info, indent=1, default=_json_default), encoding="utf-8")
        files.append(outdir / FIT_FILE)
        return files

    def plot(self, outdir) -> list[Path]:
        from ..report import population_plots
        return population_plots.population_figures(self, Path(outdir))


def _json_numbers(values) -> list:
    return [float(v) if math.isfinite(v) else None for v in values]


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                                 f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _regimen_json(regimen) -> list | None:
    if regimen is None:
        return None
    return [{"time": d.time, "dose_per_kg": d.dose_per_kg, "cells": d.cells, "amount": d.amount,
             "target": d.target} for d in regimen]


def _regimen_from_json(items):
    from ..dosing import Infusion, Regimen
    if items is None:
        return None
    return Regimen([Infusion(**item) for item in items])


# --- reading a fit back ------------------------------------------------------------------------------------

@dataclass(eq=False)
class LoadedFit:
    """A population fit read from its folder: settings and estimates (and the data when asked for)."""
    folder: Path
    info: dict
    pm: PopulationModel | None
    estimates: PopulationEstimates

    @property
    def model_name(self) -> str:
        return self.info["model"]

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(self.info["parameters"])

    @property
    def typical(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.info["estimates"]["typical"].items()}

    @property
    def fixed(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.info.get("fixed", {}).items()}

    @property
    def omega(self) -> np.ndarray:
        return self.estimates.omega

    @property
    def effects(self) -> tuple[CovariateEffect, ...]:
        return tuple(CovariateEffect(e["parameter"], e["covariate"], e["kind"], e["reference"])
                     for e in self.info.get("covariate_effects", []))

    @property
    def coefficients(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.info["estimates"].get("coefficients", {}).items()}


def load_fit(fitdir, with_data: bool = True) -> LoadedFit:
    """Read a population fit folder (fit.json); with_data re-reads the data as the fit read them."""
    from ..model.registry import load_model
    from ..simulation.run import Solver
    from .data import read_data

    folder = Path(fitdir)
    path = folder / FIT_FILE
    if not folder.is_dir():
        raise CartkinError(f"fit folder not found: {folder}")
    if not path.is_file():
        raise CartkinError(f"{folder} has no {FIT_FILE}: not a population fit folder (run cartkin fit --population)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CartkinError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CartkinError(f"{path}: not a cartkin population fit (format {FORMAT} expected)")
    try:
        model = load_model(info["model"])
        est = info["estimates"]
        q = len(info["parameters"])
        omega = np.array(est["omega"], dtype=float).reshape(q, q)
        estimates = PopulationEstimates(np.array(est["fixed_effects"], dtype=float), omega,
                                        np.array([est["sigma"][k] for k in est["sigma"]], dtype=float))
    except (KeyError, TypeError, ValueError) as exc:
        raise CartkinError(f"{path}: incomplete or damaged fit file ({exc})") from None
    pm = None
    if with_data:
        source = info.get("data") or {}
        files = source.get("files") or []
        if not files:
            raise CartkinError(f"{path}: the fit does not record its data files")
        paths = [folder / f if source.get("relative_to_fit") else Path(f) for f in files]
        for p in paths:
            if not p.is_file():
                raise CartkinError(f"data file not found: {p} (the fit in {folder} read its data from there)")
        options = _read_options(source.get("options") or {})
        data = read_data(paths, model, **options)
        solver = info.get("solver", {})
        pm = PopulationModel(model, data, info["parameters"], info.get("fixed", {}), info["error"],
                             [CovariateEffect(e["parameter"], e["covariate"], e["kind"], e["reference"])
                              for e in info.get("covariate_effects", [])],
                             _regimen_from_json(info.get("regimen")),
                             Solver("auto", float(solver.get("rtol", 1e-6)), float(solver.get("atol", 1e-9))))
        if tuple(pm.observables) != tuple(info.get("observables", pm.observables)):
            raise CartkinError(f"{path}: the data now hold observables {', '.join(pm.observables)}, the fit used "
                               f"{', '.join(info['observables'])}")
    return LoadedFit(folder, info, pm, estimates)


def _read_options(options: Mapping) -> dict:
    allowed = ("column_map", "dvid_map", "covariates", "lloq", "censor_floor", "dose_unit", "prefix_ids",
               "baseline", "positive")
    return {k: v for k, v in options.items() if k in allowed}
