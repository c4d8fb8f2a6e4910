"""Results of individual fits as plain data: per-subject estimates and the estimates table."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...data.dataset import Dataset
from ...model.definition import Model
from ...table import Table, format_number

Z95 = 1.959963984540054


@dataclass(frozen=True, eq=False)
class SubjectFit:
    """One subject's estimates (natural scale), uncertainty and fit statistics."""
    id: str
    names: tuple[str, ...]          # free parameters then sigma names
    estimates: np.ndarray
    standard_errors: np.ndarray     # natural scale (delta method)
    lower: np.ndarray               # 95% interval, natural scale
    upper: np.ndarray
    correlation: np.ndarray
    objective: float                # -log L at the optimum (-log posterior for MAP fits)
    n_observations: int
    converged: bool
    message: str
    warnings: tuple[str, ...]
    parameters: np.ndarray          # the full parameter vector used for predictions
    log_sigma: np.ndarray           # every residual SD (estimated or fixed), log scale

    @property
    def aic(self) -> float:
        return 2 * self.objective + 2 * len(self.names)

    @property
    def bic(self) -> float:
        return 2 * self.objective + len(self.names) * math.log(max(self.n_observations, 1))


@dataclass(frozen=True, eq=False)
class FitResult:
    """`cartkin.fit` output: per-subject fits and tables (files: `cartkin.report.write`/`plot`)."""
    model: Model
    data: Dataset
    free: tuple[str, ...]
    error: str
    fits: tuple[SubjectFit, ...]
    problem: object = field(repr=False)  # the objective.Problem the fit used: predictions are computed with it
    pooled_sigma: tuple[tuple[str, float, float], ...] = ()  # (name, estimate, SE of its log) when pooled
    profiles: tuple = ()  # cartkin.estimation.individual.profile.Profile per subject and profiled parameter
    priors: dict = field(default_factory=dict)  # name -> cartkin.stats.priors.LogNormalPrior: a MAP fit

    @property
    def is_map(self) -> bool:
        """Maximum a posteriori (priors given): objectives are −log posterior, AIC/BIC are not defined."""
        return bool(self.priors)

    @property
    def objective(self) -> float:
        """Total −log L over all subjects (−log posterior for a MAP fit)."""
        return float(sum(f.objective for f in self.fits))

    @property
    def n_parameters(self) -> int:
        """Estimated parameters in total: every subject's own, plus the pooled residual SDs."""
        return sum(len(f.names) for f in self.fits) + len(self.pooled_sigma)

    @property
    def aic(self) -> float:
        """AIC of the whole fit (2 × total −log L + 2 × all estimated parameters); NaN for a MAP fit."""
        if self.is_map:
            return math.nan
        return 2 * self.objective + 2 * self.n_parameters

    def estimates_table(self):
        rows = []
        for fit in self.fits:
            row = {"ID": fit.id}
            for k, name in enumerate(fit.names):
                row[name] = fit.estimates[k]
                row[f"{name}_se"] = fit.standard_errors[k]
                row[f"{name}_lower"] = fit.lower[k]
                row[f"{name}_upper"] = fit.upper[k]
            for name, value, se_log in self.pooled_sigma:  # shared by all subjects: same on every row
                row[name] = value
                row[f"{name}_se"] = value * se_log
                row[f"{name}_lower"] = value * math.exp(-Z95 * se_log)
                row[f"{name}_upper"] = value * math.exp(Z95 * se_log)
            profiles = [pr for pr in self.profiles if pr.id == fit.id]
            for pr in profiles:
                row[f"{pr.parameter}_profile_lower"] = pr.lower
                row[f"{pr.parameter}_profile_upper"] = pr.upper
            for name, prior in self.priors.items():
                row[f"{name}_prior_median"] = prior.median
                row[f"{name}_prior_sd"] = prior.sd
            # a MAP objective is −log posterior: AIC and BIC (which need −log L) are left NaN
            aic, bic = (math.nan, math.nan) if self.is_map else (fit.aic, fit.bic)
            row.update(objective=fit.objective, AIC=aic, BIC=bic, converged=int(fit.converged),
                       warnings="; ".join(fit.warnings + tuple(w for pr in profiles for w in pr.warnings)))
            rows.append(row)
        columns = tuple(dict.fromkeys(k for row in rows for k in row))  # a failed fit has no profile columns
        for row in rows:
            for k in columns:
                row.setdefault(k, math.nan)
        display = [("ID", lambda r: r["ID"])]
        for name in self.fits[0].names + tuple(n for n, _, _ in self.pooled_sigma):
            display.append((name, lambda r, n=name: _interval_text(r, n)))
        for name in dict.fromkeys(pr.parameter for pr in self.profiles):
            display.append((f"{name} profile", lambda r, n=name: _profile_text(r, n)))
        display += [("-log post" if self.is_map else "-logL", "objective"), ("conv", lambda r: "yes" if r["converged"] else "NO"),
                    ("warnings", lambda r: _shorten(r["warnings"], 60))]
        method = ""
        if self.is_map:
            method = ", maximum a posteriori (priors: " + ", ".join(
                pr.describe(n) for n, pr in self.priors.items()) + ")"
        return Table(columns, tuple(rows), tuple(display), title=f"{self.model.name}: individual estimates "
                     f"[95% CI], {self.error} error{method}")

    def predictions(self, times_per_subject=None):
        """Rows (ID, TIME, DVID, DV, CENS, IPRED, IWRES) for every observation."""
        rows = []
        for fit, subject in zip(self.fits, self.data.subjects):
            pred, _ = self.problem.predict(subject, fit.parameters)
            if pred is None:  # a failed fit (no start could be solved): no predictions
                pred = np.full(subject.n_observations, np.nan)
            log_sigma = fit.log_sigma
            iwres = np.full(subject.n_observations, np.nan)
            for k in np.unique(subject.observable_index):
                sel = subject.observable_index == k
                with np.errstate(over="ignore", invalid="ignore"):  # σ's of a failed fit are NaN
                    sigmas = np.exp(self.problem.sigma_slice(log_sigma, int(k)))
                iwres[sel] = self.problem.error_model.residuals(pred[sel], subject.values[sel], subject.censored[sel],
                                                                sigmas)
            for i in range(subject.n_observations):
                rows.append({"ID": subject.id, "TIME": subject.times[i],
                             "DVID": self.model.observables[subject.observable_index[i]],
                             "DV": subject.values[i], "CENS": int(subject.censored[i]), "IPRED": pred[i],
                             "IWRES": iwres[i]})
        return rows

def _profile_text(row, name):
    lo, hi = row.get(f"{name}_profile_lower", math.nan), row.get(f"{name}_profile_upper", math.nan)
    return (f"[{'0 (open)' if lo == 0 else format_number(lo)}, "
            f"{'inf (open)' if math.isinf(hi) else format_number(hi)}]")


def _shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters at a word boundary, with an ellipsis (the CSV keeps it whole)."""
    if len(text) <= width:
        return text
    return text[:width - 1].rsplit(" ", 1)[0].rstrip(";,") + " …"


def _interval_text(row, name):
    return (f"{format_number(row[name])} [{format_number(row[name + '_lower'])}, "
            f"{format_number(row[name + '_upper'])}]")

