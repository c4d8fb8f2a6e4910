"""Run a scenario: one virtual population, every arm simulated on it, outcomes summarised per arm.

The same patients receive every arm (a paired comparison). Arm parameter overrides move the typical
value and keep each patient's random effect: θ_i = θ_arm · exp(η_i).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import metrics
from ..population import Population, Variability
from ..progress import as_callback
from ..table import Table, format_number, quantile_text
from ..simulation.run import simulate_batch
from .spec import Arm, Scenario


HALF_LIFE_WINDOW = 84.0  # days: terminal half-life is fitted on the curve up to this day


@dataclass(frozen=True, eq=False)
class ArmResult:
    """One arm's outcomes: time courses of the reported observables and per-patient outcome arrays."""
    arm: Arm
    times: np.ndarray
    curves: dict  # observable name -> n_patients × n_times
    outcomes: dict  # outcome name -> per-patient array
    ok: np.ndarray
    failures: dict


@dataclass(frozen=True, eq=False)
class Comparison:
    """Result of `compare`: `.summary` (a Table), `.arms`, `.plot(outdir)`, `.write(outdir)`."""
    scenario: Scenario
    arms: tuple[ArmResult, ...]
    parameters: np.ndarray = field(repr=False)

    @property
    def summary(self) -> Table:
        return summary_table(self)

def population_for(scenario: Scenario) -> Population:
    spec = scenario.population
    variability = Variability(cv=dict(spec.variability_cv), correlation=dict(spec.correlation)) \
        if spec.variability_cv else None
    return Population(scenario.model, spec.n, seed=spec.seed, variability=variability,
                      covariates=dict(spec.covariates) or None, typical=dict(spec.typical) or None)


def arm_parameters(scenario: Scenario, base: np.ndarray, arm: Arm) -> np.ndarray:
    """The population's parameter matrix with the arm's typical-value overrides (random effects kept)."""
    P = base.copy()
    model = scenario.model
    for name, value in arm.parameters.items():
        j = model.parameter_index(name)
        typical = scenario.population.typical.get(name, model.parameter(name).default)
        if name in scenario.population.variability_cv and typical != 0:
            P[:, j] = base[:, j] * (value / typical)
        else:
            P[:, j] = value
    return apply_covariate_effects(model, P, scenario.population.covariate_effects)


def apply_covariate_effects(model, P: np.ndarray, effects) -> np.ndarray:
    """Covariate effects of a population fit on each patient's parameters (`CovariateEffect.factor`),
    c the patient's value of the covariate parameter."""
    for effect, coefficient in effects:
        P[:, model.parameter_index(effect.parameter)] *= effect.factor(P[:, model.parameter_index(effect.covariate)],
                                                                        coefficient)
    return P


def compare(scenario: Scenario, progress=None) -> Comparison:
    """Simulate every arm of `scenario` on one virtual population and compute the outcomes."""
    base = population_for(scenario).parameters()
    times = scenario.times()
    n = base.shape[0]
    total = n * len(scenario.arms)
    bar = as_callback(progress, total, f"{len(scenario.arms)} arms x {n} patients")
    results = []
    for k, arm in enumerate(scenario.arms):
        P = arm_parameters(scenario, base, arm)
        done_before = k * n
        callback = (lambda done, d0=done_before: bar(d0 + done)) if bar else False
        batch = simulate_batch(scenario.model, arm.regimen, times, P, rtol=scenario.rtol, atol=scenario.atol,
                               progress=callback)
        results.append(_arm_outcomes(scenario, arm, batch, P))
    return Comparison(scenario, tuple(results), base)


def _arm_outcomes(scenario: Scenario, arm: Arm, batch, P) -> ArmResult:
    model, o, times = scenario.model, scenario.outcomes, batch.times
    curves = {}
    outcomes = {}
    exposure = batch.observable(o.exposure)
    curves[o.exposure] = exposure
    summary = metrics.exposure_summary(times, exposure, limit=o.limit)
    # the half-life of the contraction phase (to day 84, as in label PK), not of the memory plateau
    window = times <= min(HALF_LIFE_WINDOW, times[-1])
    summary["half_life"] = metrics.terminal_half_life(times[window], exposure[:, window], limit=o.limit)
    outcomes.update(summary)
    if o.blast:
        blast = batch.observable(o.blast)
        curves[o.blast] = blast
        outcomes["response"] = metrics.response(times, blast, day=o.response_day, threshold=o.response_threshold)
        outcomes["mrd_negative"] = metrics.mrd_negative(times, blast, day=o.response_day,
                                                        threshold=o.mrd_threshold)
        outcomes["relapse_day"] = metrics.relapse_day(times, blast, threshold=o.response_threshold,
                                                      response_day=o.response_day)
        for day in o.relapse_days:
            outcomes[f"relapse_free_{day:g}"] = metrics.relapse_free(
                times, blast, at_day=day, threshold=o.response_threshold, response_day=o.response_day)
    if "b_cells" in model.observables and "B0" in model.parameter_names:
        b = batch.observable("b_cells")
        curves["b_cells"] = b
        threshold = o.aplasia_fraction * P[:, model.parameter_index("B0")]
        outcomes["aplasia_days"] = metrics.duration_below(times, b, threshold)
    for name in ("il6", "il10"):
        if name in model.observables:
            outcomes[f"peak_{name}"] = metrics.cmax(times, batch.observable(name))
    ok = batch.ok
    for key, value in outcomes.items():  # failed patients never count as numbers
        value = np.asarray(value, dtype=float)
        value[~ok] = np.nan
        outcomes[key] = value
    return ArmResult(arm, times, curves, outcomes, ok, batch.failures())


def _quantiles(row: dict, name: str, values: np.ndarray) -> None:
    v = values[np.isfinite(values)]
    if v.size:
        row[name + "_median"], row[name + "_p05"], row[name + "_p95"] = (float(x) for x in
                                                                         np.percentile(v, [50, 5, 95]))
    else:
        row[name + "_median"] = row[name + "_p05"] = row[name + "_p95"] = float("nan")


def _percent(values: np.ndarray, ok: np.ndarray) -> float:
    v = values[ok]
    return float(100.0 * np.mean(v > 0.5)) if v.size else float("nan")


def summary_table(comparison: Comparison) -> Table:
    """One row per arm: exposure quantiles, response rates, relapse-free rates, aplasia, cytokine peaks."""
    o = comparison.scenario.outcomes
    rows = []
    for res in comparison.arms:
        out, ok = res.outcomes, res.ok
        row = {"arm": res.arm.name, "regimen": res.arm.regimen.describe(), "n": int(ok.size),
               "failed": int((~ok).sum())}
        for name in ("cmax", "tmax", "auc_0_28", "tlast", "half_life"):
            _quantiles(row, name, out[name])
        if o.blast:
            row["response_pct"] = _percent(out["response"], ok)
            row["mrd_negative_pct"] = _percent(out["mrd_negative"], ok)
            for day in o.relapse_days:
                row[f"relapse_free_{day:g}_pct"] = _percent(out[f"relapse_free_{day:g}"], ok)
        if "aplasia_days" in out:
            _quantiles(row, "aplasia_days", out["aplasia_days"])
        for name in ("peak_il6", "peak_il10"):
            if name in out:
                _quantiles(row, name, out[name])
        rows.append(row)
    columns = tuple(rows[0].keys())
    model = comparison.scenario.model
    exposure_unit = model.unit(o.exposure)  # the scenario checked it is an observable or state
    display = [("arm", lambda r: r["arm"]),
               (f"Cmax {exposure_unit}".rstrip(), lambda r: quantile_text(r, "cmax")),
               ("Tmax d", lambda r: quantile_text(r, "tmax")),
               (f"AUC0-28 {exposure_unit}·d" if exposure_unit else "AUC0-28", lambda r: quantile_text(r, "auc_0_28")),
               (f"t1/2 d (to d{HALF_LIFE_WINDOW:g})", _half_life_text),
               ("Tlast d", lambda r: _tlast_text(r, comparison.scenario.horizon))]
    if o.blast:
        display += [(f"resp d{o.response_day:g} %", lambda r: format_number(r["response_pct"])),
                    ("MRD- %", lambda r: format_number(r["mrd_negative_pct"]))]
        for day in o.relapse_days:
            display.append((f"RFS d{day:g} %", lambda r, d=day: format_number(r[f"relapse_free_{d:g}_pct"])))
    if "aplasia_days_median" in rows[0]:
        display.append(("B aplasia d", lambda r: format_number(r["aplasia_days_median"])))
    for name, label, observable in (("peak_il6", "IL-6 peak", "il6"), ("peak_il10", "IL-10 peak", "il10")):
        if name + "_median" in rows[0]:  # the model has that observable
            display.append((f"{label} {model.unit(observable)}".rstrip(),
                            lambda r, nm=name: format_number(r[nm + "_median"])))
    if any(r["failed"] for r in rows):
        display.append(("failed", lambda r: str(r["failed"])))
    return Table(columns, tuple(rows), tuple(display), title=comparison.scenario.name)


#: half-lives beyond this many fitting windows are shown as '>' it: no measurable decline by day 84
HALF_LIFE_CAP = 10


def _half_life_text(row: dict) -> str:
    """Half-life quantiles; a value over HALF_LIFE_CAP windows is shown as '>cap' (the CSV keeps it)."""
    cap = HALF_LIFE_CAP * HALF_LIFE_WINDOW

    def one(v):
        return f">{cap:g}" if v > cap else format_number(v)
    return f"{one(row['half_life_median'])} [{one(row['half_life_p05'])}–{one(row['half_life_p95'])}]"


def _tlast_text(row: dict, horizon: float) -> str:
    """Tlast quantiles, with values at the horizon shown as '≥ horizon' (still detectable at the end)."""
    def one(v):
        return f"≥{horizon:g}" if v >= horizon - 1e-9 else format_number(v)
    return f"{one(row['tlast_median'])} [{one(row['tlast_p05'])}–{one(row['tlast_p95'])}]"


