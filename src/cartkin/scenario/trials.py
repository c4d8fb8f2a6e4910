"""Trial replicates: what trials of a few patients look like when drawn from the scenario's population.

A scenario's ``[trial]`` table asks for `replicates` trials of `size` patients per arm::

    [trial]
    size = 12
    replicates = 500

    [trial.observed]                      # optional: a published result to compare with
    response = { at_least = 12 }          # 12/12 responses: a replicate does as well with >= 12
    crs_grade3plus = { at_most = 0 }      # no grade >= 3 CRS: as well with <= 0

Patient j of replicate r is subject r · 2^24 + j of the population's counter-based streams (seed and
subject index), so a replicate's patients do not depend on the chunking, the threads or the workers, and
replicate r keeps its first patients when `size` grows. All arms of a replicate treat the same patients.
With ``[population.uncertainty]`` (posterior draws of a calibration), replicate r takes the typical values
and CV% of draw r mod n_draws: the spread of the trial outcomes then holds both the sampling of 12 patients
and the uncertainty of the calibration.

Per replicate and arm (`trials.csv`): the number of patients with each yes/no outcome of the scenario
(response, MRD-negative, relapse-free at each day, aplasia on a day, CRS any and grade ≥ 3), relapse-free
among responders (%) and the median Cmax. Per arm (`trials_summary.csv`): median, 5th and 95th percentiles
and mean over replicates, and for each observed result the fraction of replicates at least as good as it,
P, with its Monte-Carlo standard error sqrt(P(1 − P)/replicates). A patient whose solve failed counts in
no outcome (`failed` says how many).

Replicates × size × arms subjects run through the same chunked executor as `compare` (in this process,
or as tasks on a Dask cluster), `CHUNK` subjects per chunk in this process.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import CartkinError
from ..execution import InProcess, chunks_for, executor, spread
from ..progress import as_callback
from ..simulation.run import simulate_batch
from ..table import Table, format_number
from .arms import arm_outcomes, arm_parameters, population_for
from .spec import TRIAL_STRIDE, Observed, PopulationSpec, Scenario

#: subjects per chunk in this process: bounds the memory of the time courses (il10, one year, 451 output
#: times: peak RSS 328 MB with 512, 644 MB with 2048, same run time; meta10-19's 30,000 trial subjects)
CHUNK = 512


@dataclass(frozen=True, eq=False)
class TrialResult:
    """Trial replicates of a scenario: `.values[arm][statistic]` has one value per replicate."""
    scenario: Scenario
    values: dict[str, dict[str, np.ndarray]]
    draws: np.ndarray | None  # the calibration draw of each replicate (None without uncertainty)

    @property
    def size(self) -> int:
        return self.scenario.trial.size

    @property
    def replicates(self) -> int:
        return self.scenario.trial.replicates

    @property
    def observed(self) -> tuple[Observed, ...]:
        return self.scenario.trial.observed

    @property
    def counted(self) -> tuple[str, ...]:
        """The yes/no outcomes counted per replicate, in the scenario's order."""
        return self.scenario.outcomes.counted(self.scenario)

    def statistics(self) -> tuple[str, ...]:
        return tuple(next(iter(self.values.values())))

    def probability(self, arm: str, observed: Observed | None = None) -> tuple[float, float]:
        """P(a replicate of `arm` at least as good as `observed`; None: as every observed result at once)
        and its Monte-Carlo standard error."""
        met = self.met(arm, observed)
        p = float(met.mean())
        return p, math.sqrt(p * (1.0 - p) / met.size)

    def met(self, arm: str, observed: Observed | None = None) -> np.ndarray:
        """Per replicate: at least as good as `observed` (None: as all observed results together)."""
        items = self.observed if observed is None else (observed,)
        if not items:
            raise CartkinError("the scenario's [trial] has no observed results to compare with")
        met = np.ones(self.replicates, dtype=bool)
        for item in items:
            met &= item.met(self.values[arm][item.outcome])
        return met

    def rows(self) -> list[dict]:
        """trials.csv: one row per replicate and arm."""
        out = []
        for arm, values in self.values.items():
            for r in range(self.replicates):
                row = {"replicate": r + 1, "arm": arm}
                if self.draws is not None:
                    row["draw"] = int(self.draws[r]) + 1
                row["size"] = self.size
                row.update({name: _plain(v[r]) for name, v in values.items()})
                out.append(row)
        return out

    def summary_rows(self) -> list[dict]:
        """trials_summary.csv: per arm and statistic, quantiles over replicates and P(≥ observed) with its SE."""
        out = []
        observed = {o.outcome: o for o in self.observed}
        counts = set(self.counted) | {"n", "failed"}
        for arm, values in self.values.items():
            for name, v in values.items():
                finite = v[np.isfinite(v)]
                method = "inverted_cdf" if name in counts else "linear"  # counts stay whole numbers
                q = (np.percentile(finite, [50, 5, 95], method=method) if finite.size
                     else np.full(3, np.nan))
                row = {"arm": arm, "statistic": name, "median": float(q[0]), "p05": float(q[1]),
                       "p95": float(q[2]), "mean": float(finite.mean()) if finite.size else float("nan"),
                       "replicates": int(finite.size), "observed": "", "p_observed": float("nan"),
                       "p_observed_se": float("nan")}
                if name in observed:
                    row["observed"] = observed[name].describe(self.size)
                    row["p_observed"], row["p_observed_se"] = self.probability(arm, observed[name])
                out.append(row)
            if len(self.observed) > 1:
                p, se = self.probability(arm)
                out.append({"arm": arm, "statistic": "all observed", "median": float("nan"),
                            "p05": float("nan"), "p95": float("nan"), "mean": float("nan"),
                            "replicates": self.replicates,
                            "observed": " and ".join(o.describe(self.size) for o in self.observed),
                            "p_observed": p, "p_observed_se": se})
        return out

    def table(self) -> Table:
        """The per-arm summary shown in the terminal and in summary.md."""
        size = self.size
        rows = []
        for arm, values in self.values.items():
            row = {"arm": arm}
            for name, v in values.items():
                finite = v[np.isfinite(v)]
                method = "inverted_cdf" if name in self.counted else "linear"
                row[name] = (np.percentile(finite, [50, 5, 95], method=method) if finite.size
                             else np.full(3, np.nan))
            for k, item in enumerate(self.observed):
                row[f"p{k}"] = self.probability(arm, item)
            if len(self.observed) > 1:
                row["p_all"] = self.probability(arm)
            rows.append(row)
        shown = [n for n in ("response", "crs_any", "crs_grade3plus") if n in self.counted]
        display = [("arm", lambda r: r["arm"])]
        labels = {"response": "responses", "crs_any": "CRS any", "crs_grade3plus": "CRS ≥3"}
        for name in shown:
            display.append((f"{labels[name]} /{size}", lambda r, n=name: _count_text(r[n])))
        for name in self.statistics():
            if name.endswith("_responders_pct"):
                day = name.removeprefix("relapse_free_").removesuffix("_responders_pct")
                display.append((f"RFS d{day} resp. %", lambda r, n=name: _count_text(r[n])))
        if "cmax_median" in self.statistics():
            exposure = self.scenario.outcomes.get("exposure")
            unit = self.scenario.model.unit(exposure.observable) if exposure is not None else ""
            display.append((f"median Cmax {unit}".rstrip(), lambda r: _count_text(r["cmax_median"])))
        for k, item in enumerate(self.observed):
            display.append((f"P({item.describe(size)})", lambda r, k=k: _p_text(r[f"p{k}"])))
        if len(self.observed) > 1:
            display.append(("P(all observed)", lambda r: _p_text(r["p_all"])))
        return Table(tuple(rows[0]), tuple(rows), tuple(display),
                     title=f"{self.replicates} trials of {size} patients per arm: median [5–95%] over trials")


def _plain(value):
    return int(value) if float(value).is_integer() else float(value)


def _count_text(q) -> str:
    """'median [p5–p95]'; whole numbers (counts) without decimals."""
    def one(v):
        v = float(v)
        return str(int(v)) if v.is_integer() else format_number(v)
    return f"{one(q[0])} [{one(q[1])}–{one(q[2])}]"


def _p_text(p_se) -> str:
    p, se = p_se
    return f"{p:.3f} ± {se:.3f}"


def spec_for_draw(spec: PopulationSpec, draw: Mapping[str, float]) -> PopulationSpec:
    """The population of one calibration draw: its PARAMETER columns as typical values, PARAMETER_cv as
    CV% of the variability."""
    typical = {**spec.typical, **{k: v for k, v in draw.items() if not k.endswith("_cv")}}
    cv = {**spec.variability_cv, **{k[:-3]: v for k, v in draw.items() if k.endswith("_cv")}}
    return dataclasses.replace(spec, typical=typical, variability_cv=cv)


def trial_subjects(positions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(replicate, subject index in the population's streams) of flat trial positions r · size + j."""
    replicate = positions // size
    return replicate, replicate * TRIAL_STRIDE + positions % size


def run_trials(scenario: Scenario, progress=None, client=None, chunk_size: int | None = None) -> TrialResult:
    """The scenario's [trial] replicates for every arm (see the module docstring). client and chunk_size as
    for `compare`; the numbers do not depend on them."""
    trial = scenario.trial
    if trial is None:
        raise CartkinError(f"scenario {scenario.name!r} has no [trial] table (size, replicates)")
    total = trial.size * trial.replicates
    run = executor(client)
    if chunk_size is None:
        chunk_size = min(total, CHUNK) if isinstance(run, InProcess) else spread(total, run.workers)
    per_arm, sizes = chunks_for(total, chunk_size)
    arms = scenario.arms
    tasks = [(k, first, count) for k in range(len(arms)) for first, count in per_arm]
    bar = as_callback(progress, total * len(arms),
                      f"{trial.replicates} trials x {trial.size} patients x {len(arms)} arms")
    parts = run.map(_trial_chunk, scenario, tasks, sizes * len(arms), bar)
    m = len(per_arm)
    values = {}
    for k, arm in enumerate(arms):
        outcomes = {name: np.concatenate([p[0][name] for p in parts[k * m:(k + 1) * m]]) for name in parts[0][0]}
        ok = np.concatenate([p[1] for p in parts[k * m:(k + 1) * m]])
        values[arm.name] = _per_replicate(scenario, outcomes, ok.reshape(trial.replicates, trial.size))
    draws = scenario.population.uncertainty
    which = np.arange(trial.replicates) % len(draws) if draws else None
    return TrialResult(scenario, values, which)


def _trial_chunk(scenario, task: tuple[int, int, int], progress=None):
    """Trial positions first, ..., first + count - 1 of arm k: (per-patient outcomes, solved)."""
    k, first, count = task
    arm, spec = scenario.arms[k], scenario.population
    replicate, subjects = trial_subjects(np.arange(first, first + count, dtype=np.int64), scenario.trial.size)
    n = int(subjects.max()) + 1
    draws = spec.uncertainty
    if draws:
        which = replicate % len(draws)
        P = np.empty((count, scenario.model.n_parameters()))
        for d in np.unique(which):
            rows = which == d
            own = spec_for_draw(spec, draws[int(d)])
            P[rows] = arm_parameters(scenario, population_for(scenario, own, n).subset(subjects[rows]), arm, own)
    else:
        P = arm_parameters(scenario, population_for(scenario, spec, n).subset(subjects), arm, spec)
    scale = arm.dose_scale(spec.seed, subjects)
    batch = simulate_batch(scenario.model, arm.regimen, scenario.times(), P, scenario.solver,
                           progress=progress or False, dose_scale=scale)
    result = arm_outcomes(scenario, arm, batch, P)  # its time courses are dropped here
    return result.outcomes, result.ok


def _per_replicate(scenario: Scenario, outcomes: dict, ok: np.ndarray) -> dict[str, np.ndarray]:
    """Trial-level values of one arm (replicates × size per-patient outcomes → one value per replicate)."""
    R, size = ok.shape
    out = {"n": ok.sum(axis=1).astype(float), "failed": (~ok).sum(axis=1).astype(float)}
    counted = scenario.outcomes.counted(scenario)
    for name in counted:
        out[name] = (outcomes[name].reshape(R, size) > 0.5).sum(axis=1).astype(float)  # NaN (failed) is no
    if "response" in counted:
        responders = out["response"]
        for name in counted:
            if name.startswith("relapse_free_"):
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[f"{name}_responders_pct"] = np.where(responders > 0, 100.0 * out[name] / responders, np.nan)
    if "cmax" in outcomes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a replicate whose every solve failed
            out["cmax_median"] = np.nanmedian(outcomes["cmax"].reshape(R, size), axis=1)
    return out
