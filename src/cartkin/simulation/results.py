"""Result objects: states at the output times, observables on demand, and an honest status."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codegen import compile_model
from ..errors import CartkinError
from ..model.definition import unknown_name_message
from ..solve import status as st


@dataclass(frozen=True)
class Status:
    """Outcome of one solve: `ok`, a code from cartkin.solve.status, and where it failed."""
    code: int
    time: float = float("nan")

    @property
    def ok(self) -> bool:
        return self.code == st.SUCCESS

    @property
    def message(self) -> str:
        text = st.describe(self.code)
        return text if self.ok or np.isnan(self.time) else f"{text} at t = {self.time:.6g} d"

    def __str__(self) -> str:
        return self.message

    def __bool__(self) -> bool:
        return self.ok


def _observe(model, times, states, P):
    """Observables for stacked states (subjects × times × states) → (subjects × times × observables)."""
    n, nt, ns = states.shape
    out = np.empty((n * nt, len(model.observables)))
    offsets = np.arange(n + 1, dtype=np.int64) * nt
    compile_model(model).observe_batch(np.tile(times, n), offsets,
                                       np.ascontiguousarray(states.reshape(n * nt, ns)),
                                       np.ascontiguousarray(P), out)
    return out.reshape(n, nt, -1)


def _column(model, name, states, observed):
    if name in model.observables:
        return observed()[..., model.observables.index(name)]
    if name in model.state_names:
        return states[..., model.state_index(name)]
    raise CartkinError(unknown_name_message("observable", name, model.observables + model.state_names,
                                            model.name))


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """One patient's simulation: `.times`, `.states` (n_times × n_states), `.observable(name)`, `.status`."""
    model: object
    times: np.ndarray
    states: np.ndarray
    parameters: np.ndarray
    code: int
    failed_at: float
    counters: np.ndarray
    solver: object
    regimen: object

    @property
    def status(self) -> Status:
        return Status(self.code, self.failed_at)

    @property
    def ok(self) -> bool:
        return self.code == st.SUCCESS

    def observables(self) -> np.ndarray:
        """All observables, n_times × n_observables (NaN where the solve failed)."""
        return _observe(self.model, self.times, self.states[None], self.parameters[None])[0]

    def observable(self, name: str) -> np.ndarray:
        """An observable (or a state) by name, at every output time."""
        return _column(self.model, name, self.states, self.observables)

    def to_csv(self, path: str | Path) -> None:
        """Write time, every state and every observable as CSV columns."""
        obs = self.observables()
        header = ["time", *self.model.state_names, *self.model.observables]
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for i, t in enumerate(self.times):
                writer.writerow([f"{t:g}", *(f"{v:.10g}" for v in self.states[i]),
                                 *(f"{v:.10g}" for v in obs[i])])


@dataclass(frozen=True, eq=False)
class BatchResult:
    """Many subjects on shared output times: `.states` is n_subjects × n_times × n_states."""
    model: object
    times: np.ndarray
    states: np.ndarray
    parameters: np.ndarray
    codes: np.ndarray
    failed_at: np.ndarray
    counters: np.ndarray
    solver: object
    regimen: object

    @property
    def n_subjects(self) -> int:
        return self.states.shape[0]

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of subjects whose solve succeeded."""
        return self.codes == st.SUCCESS

    @property
    def status(self) -> list[Status]:
        return [Status(int(c), float(t)) for c, t in zip(self.codes, self.failed_at)]

    def failures(self) -> dict[str, int]:
        """Count of failed subjects by reason (empty when all succeeded)."""
        reasons: dict[str, int] = {}
        for c in self.codes[self.codes != st.SUCCESS]:
            reasons[st.describe(c)] = reasons.get(st.describe(c), 0) + 1
        return reasons

    def observables(self) -> np.ndarray:
        return _observe(self.model, self.times, self.states, self.parameters)

    def observable(self, name: str) -> np.ndarray:
        """An observable (or state) by name: n_subjects × n_times, NaN for failed subjects."""
        return _column(self.model, name, self.states, self.observables)

    def subject(self, i: int) -> SimulationResult:
        return SimulationResult(self.model, self.times, self.states[i], self.parameters[i],
                                int(self.codes[i]), float(self.failed_at[i]), self.counters[i],
                                self.solver, self.regimen)
