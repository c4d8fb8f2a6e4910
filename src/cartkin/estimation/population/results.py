"""Results of a population (SAEM) fit as plain data: estimates, standard errors, shrinkage, tables.

Files are written by `cartkin.report` (tables, figures) and `fit_file` (fit.json).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ...table import Table, format_number
from .model import PopulationModel

Z95 = 1.959963984540054
DRIFT_LIMIT = 1.5  # |mean difference of the two halves of the late exploratory window| / its SD (and > SE)


@dataclass
class PopulationEstimates:
    """[μ, β] (log typical values then covariate coefficients), Ω (q × q) and residual σ's."""
    fixed_effects: np.ndarray
    omega: np.ndarray
    sigma: np.ndarray

    def copy(self) -> "PopulationEstimates":
        return PopulationEstimates(self.fixed_effects.copy(), self.omega.copy(), self.sigma.copy())


def trace_names(pm: PopulationModel, structure: str) -> list[str]:
    """Column names of the convergence traces: typical values, coefficients, Ω entries, σ's."""
    names = list(pm.parameters) + [e.name for e in pm.effects]
    names += omega_names(pm.parameters, structure)
    return names + list(pm.sigma_names)


def omega_names(parameters: Sequence[str], structure: str) -> list[str]:
    q = len(parameters)
    if structure == "diag":
        return [f"omega2_{p}" for p in parameters]
    rows, cols = np.tril_indices(q)
    return [f"omega2_{parameters[i]}" if i == j else f"cov_{parameters[j]}_{parameters[i]}" for i, j in zip(rows, cols)]



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
        iwres = pm.error_model.residuals(ipred, design.y, design.censored,
                                         pm.sigma_per_observation(self.estimates.sigma, design.slot))
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

# --- reading a fit back ------------------------------------------------------------------------------------


