"""Run a scenario: one virtual population, every arm simulated on it, outcomes summarised per arm.

The same patients receive every arm (a paired comparison). Arm parameter overrides move the typical
value and keep each patient's random effect: θ_i = θ_arm · exp(η_i).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..execution import InProcess, chunks_for, executor, spread
from ..progress import as_callback
from ..table import Table
from ..simulation.run import simulate_batch
from .arms import ArmResult, arm_outcomes, arm_parameters, population_for
from .spec import Arm, Scenario
from .trials import TrialResult, run_trials


@dataclass(frozen=True, eq=False)
class Comparison:
    """Result of `compare`: `.summary` (a Table), `.arms`, `.plot(outdir)`, `.write(outdir)`."""
    scenario: Scenario
    arms: tuple[ArmResult, ...]
    parameters: np.ndarray = field(repr=False)
    trials: TrialResult | None = None  # the [trial] replicates (scenario/trials.py), when the scenario asks

    @property
    def summary(self) -> Table:
        return summary_table(self)

def compare(scenario: Scenario, progress=None, client=None, chunk_size: int | None = None,
            trials: bool = True) -> Comparison:
    """Simulate every arm of `scenario` on one virtual population and compute the outcomes.

    client: a `distributed.Client` to run (arm, patient chunk) tasks on a Dask cluster, each worker drawing
    its own patients; None for `cartkin.execution.using`'s client, else this process (one chunk per arm).
    The results are identical either way. chunk_size: patients per task (default: a whole arm in this
    process, about four chunks per worker on a cluster). trials: also run the scenario's [trial] replicates
    (`.trials`; see `cartkin.scenario.trials`), through the same executor.
    """
    base = population_for(scenario).parameters()
    n = base.shape[0]
    run = executor(client)
    if chunk_size is None:
        chunk_size = n if isinstance(run, InProcess) else spread(n, run.workers)
    per_arm, sizes = chunks_for(n, chunk_size)
    tasks = [(k, first, count) for k in range(len(scenario.arms)) for first, count in per_arm]
    bar = as_callback(progress, n * len(scenario.arms), f"{len(scenario.arms)} arms x {n} patients")
    parts = run.map(_arm_chunk, scenario, tasks, sizes * len(scenario.arms), bar)
    m = len(per_arm)
    results = tuple(_join(arm, scenario.times(), parts[k * m:(k + 1) * m]) for k, arm in enumerate(scenario.arms))
    replicates = None
    if trials and scenario.trial is not None:
        replicates = run_trials(scenario, progress=progress, client=client)
    return Comparison(scenario, results, base, replicates)


def _arm_chunk(scenario: Scenario, task: tuple[int, int, int], progress=None) -> ArmResult:
    """Patients first, ..., first + count - 1 of arm k (in this process or on a worker)."""
    k, first, count = task
    arm = scenario.arms[k]
    P = arm_parameters(scenario, population_for(scenario).parameters(first, count), arm)
    scale = arm.dose_scale(scenario.population.seed, np.arange(first, first + count))
    batch = simulate_batch(scenario.model, arm.regimen, scenario.times(), P, scenario.solver,
                           progress=progress or False, dose_scale=scale)
    return arm_outcomes(scenario, arm, batch, P, scale)


def _join(arm: Arm, times: np.ndarray, parts: list[ArmResult]) -> ArmResult:
    """One arm's result from its patient chunks, in patient order."""
    if len(parts) == 1:
        return parts[0]
    failures: dict[str, int] = {}
    for part in parts:
        for reason, count in part.failures.items():
            failures[reason] = failures.get(reason, 0) + count
    return ArmResult(arm, times, {name: np.concatenate([p.curves[name] for p in parts]) for name in parts[0].curves},
                     {name: np.concatenate([p.outcomes[name] for p in parts]) for name in parts[0].outcomes},
                     np.concatenate([p.ok for p in parts]), failures)


def summary_table(comparison: Comparison) -> Table:
    """One row per arm: n, failures and the columns of each outcome of the scenario (scenario/outcomes.py)."""
    scenario = comparison.scenario
    summaries = [outcome.summary(settings, scenario) for outcome, settings in scenario.outcomes]
    rows = []
    for res in comparison.arms:
        row = {"arm": res.arm.name, "regimen": res.arm.describe(), "n": int(res.ok.size),
               "failed": int((~res.ok).sum())}
        for statistics, _ in summaries:
            for statistic in statistics:
                row.update(statistic.values(res.outcomes[statistic.outcome], res.ok))
        rows.append(row)
    columns = tuple(rows[0].keys())
    display = [("arm", lambda r: r["arm"])]
    display += [(d.header, d.text) for _, shown in summaries for d in shown]
    if any(r["failed"] for r in rows):
        display.append(("failed", lambda r: str(r["failed"])))
    return Table(columns, tuple(rows), tuple(display), title=scenario.name)
