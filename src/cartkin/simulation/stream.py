"""Population summaries in chunks: 10^6 subjects without holding 10^6 trajectories in memory.

`simulate_summaries` draws (or slices) the parameters of one chunk of subjects, solves the chunk with the
same compiled batch loop as `simulate_batch`, reduces it to per-subject numbers with `summarize`, and
drops the trajectories before the next chunk. Memory is bounded by the chunk (about 135 MB for the default
16,384 il10 subjects × 30 times; 65,536 took 510 MB and was no faster), not by the population. Results equal those of `simulate_batch` on the whole
population: subjects are solved independently, and a `Population` draws each subject from (seed, index).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..errors import CartkinError
from ..execution import chunks_for, executor
from ..metrics import exposure_summary
from ..model.definition import Model
from ..progress import as_callback
from ..solve import status as st
from ..solve.common import N_COUNTERS
from .results import BatchResult
from ..solve.solver import Solver
from .run import _prepare, as_solver, parameter_matrix, solve_shared

Summarize = Callable[[BatchResult], Mapping[str, np.ndarray]]


@dataclass(frozen=True, eq=False)
class PopulationSummary:
    """Per-subject summaries of a chunked population run: `.values[name]` has one entry per subject."""
    values: dict[str, np.ndarray]
    codes: np.ndarray
    counters: np.ndarray  # summed over subjects: steps, accepted, rejected, rhs calls, Jacobians

    @property
    def n_subjects(self) -> int:
        return self.codes.size

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of subjects whose solve succeeded (failed subjects have NaN summaries)."""
        return self.codes == st.SUCCESS

    def failures(self) -> dict[str, int]:
        """Count of failed subjects by reason (empty when all succeeded)."""
        bad, counts = np.unique(self.codes[self.codes != st.SUCCESS], return_counts=True)
        return {st.describe(int(c)): int(k) for c, k in zip(bad, counts)}


@dataclass(frozen=True)
class exposure:
    """A `summarize` function: Cmax, Tmax, AUC0–28, AUC0–84, half-life and Tlast of one observable.
    (A class rather than a closure, so it pickles: any executor can send it to another process.)"""
    observable: str

    def __call__(self, batch: BatchResult) -> Mapping[str, np.ndarray]:
        return exposure_summary(batch.times, batch.observable(self.observable))


def simulate_summaries(model: Model | str, regimen, times, params, summarize: Summarize | None = None,
                       chunk_size: int = 16_384, solver: Solver | None = None, *, rtol: float | None = None,
                       atol: float | None = None, method: str | None = None, max_steps: int | None = None,
                       progress=None, client=None) -> PopulationSummary:
    """Simulate a population chunk by chunk and keep only per-subject summaries.

    params: a `cartkin.Population` (drawn chunk by chunk, never all at once), an n × n_parameters matrix, or a mapping of
    names to arrays as for `simulate_batch`. summarize: BatchResult → {name: one value per subject};
    by default `exposure(first observable)`. client: a `distributed.Client` to run the chunks on a Dask
    cluster (each worker draws its own chunk's subjects; the numbers are the same as in one process), or
    None for `cartkin.execution.using`'s client, else this process.
    """
    model, regimen, times, solver = _prepare(model, regimen, times, as_solver(solver, rtol, atol, method, max_steps))
    if summarize is None:
        if not model.observables:
            raise CartkinError(f"model {model.name} has no observables: give summarize=")
        summarize = exposure(model.observables[0])
    rows = _row_source(model, params)
    n = rows.n
    chunks, sizes = chunks_for(n, chunk_size)
    bar = as_callback(progress, n, f"simulating {n} subjects")
    shared = (model, regimen, times, solver, summarize, rows)
    parts = executor(client).map(_summary_chunk, shared, chunks, sizes, bar)
    values: dict[str, np.ndarray] = {}
    codes = np.empty(n, dtype=np.int64)
    counters = np.zeros(N_COUNTERS, dtype=np.int64)
    for i, (first, count) in enumerate(chunks):
        (chunk_values, c, k), parts[i] = parts[i], None  # each chunk freed once copied: memory stays ~1x
        for name, v in chunk_values.items():
            if name not in values:
                if first:
                    raise CartkinError(f"summarize returned a new name {name!r} in a later chunk")
                values[name] = np.empty(n)
            values[name][first:first + count] = v
        codes[first:first + count] = c
        counters += k
    return PopulationSummary(values, codes, counters)


def _summary_chunk(shared: tuple, chunk: tuple[int, int], progress=None):
    """One chunk of `simulate_summaries` (in this process or on a worker): summaries, codes, counters."""
    model, regimen, times, solver, summarize, rows = shared
    first, count = chunk
    P = rows(first, count)
    out, _, c, t_fail, k = solve_shared(model, P, times, regimen.events(model), solver, progress)
    batch = BatchResult(model, times, out.reshape(count, times.size, model.n_states()), P, c, t_fail,
                        k, solver, regimen)
    values = {}
    for name, v in summarize(batch).items():
        v = np.asarray(v, dtype=float)
        if v.shape != (count,):
            raise CartkinError(f"summarize returned {name!r} with shape {v.shape}; "
                               f"expected one value per subject ({count},)")
        values[name] = v
    return values, c, k.sum(axis=0)


@dataclass(frozen=True)
class _RowSource:
    n: int
    rows: Callable[[int, int], np.ndarray]

    def __call__(self, first: int, count: int) -> np.ndarray:
        return self.rows(first, count)


@dataclass(frozen=True, eq=False)
class _Rows:
    """Rows of a parameter matrix (picklable, unlike a lambda)."""
    matrix: np.ndarray

    def __call__(self, first: int, count: int) -> np.ndarray:
        return self.matrix[first:first + count]


def _row_source(model: Model, params) -> _RowSource:
    """Parameter rows on demand: drawn per chunk from a population (anything with `.model`, `.n` and
    `.parameters(first, count)`, such as cartkin.Population), sliced from a matrix otherwise."""
    if all(hasattr(params, a) for a in ("model", "n", "parameters")) and callable(params.parameters):
        if params.model.fingerprint() != model.fingerprint():
            raise CartkinError(f"the population is of model {params.model.name}, not {model.name}")
        return _RowSource(params.n, params.parameters)
    P = parameter_matrix(model, params)
    return _RowSource(P.shape[0], _Rows(P))
