"""Population summaries in chunks: 10^6 subjects without holding 10^6 trajectories in memory.

`simulate_summaries` draws (or slices) the parameters of one chunk of subjects, solves the chunk with the
same compiled batch loop as `simulate_batch`, reduces it to per-subject numbers with `summarize`, and
drops the trajectories before the next chunk. Memory is bounded by the chunk (about 135 MB for the default
16,384 il10 subjects × 30 times; 65,536 took 510 MB and was no faster), not by the population. Results equal those of `simulate_batch` on the whole
population: subjects are solved independently, and a `Population` draws each subject from (seed, index).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Mapping

import numpy as np

from ..codegen import generate
from ..codegen.generate import GENERATED
from ..errors import CartkinError
from ..execution import chunks_for, executor
from ..metrics import exposure_summary
from ..model.definition import Model
from ..model.registry import load_model
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


def exposure(observable: str) -> Summarize:
    """A `summarize` function: Cmax, Tmax, AUC0–28, AUC0–84, half-life and Tlast of one observable."""
    def summarize(batch: BatchResult) -> Mapping[str, np.ndarray]:
        return exposure_summary(batch.times, batch.observable(observable))
    return summarize


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
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise CartkinError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if summarize is None:
        if not model.observables:
            raise CartkinError(f"model {model.name} has no observables: give summarize=")
        summarize = exposure(model.observables[0])
    rows = _row_source(model, params)
    n = rows.n
    bar = as_callback(progress, n, f"simulating {n} subjects")
    chunks, sizes = chunks_for(n, int(chunk_size))
    shared = Shipped((model, regimen, times, solver, summarize, rows))
    parts = executor(client).map(_summary_chunk, shared, chunks, sizes, bar)
    values: dict[str, np.ndarray] = {}
    codes = np.empty(n, dtype=np.int64)
    counters = np.zeros(N_COUNTERS, dtype=np.int64)
    for (first, count), (chunk_values, c, k) in zip(chunks, parts):
        for name, v in chunk_values.items():
            if name not in values:
                if first:
                    raise CartkinError(f"summarize returned a new name {name!r} in a later chunk")
                values[name] = np.empty(n)
            values[name][first:first + count] = v
        codes[first:first + count] = c
        counters += k
    return PopulationSummary(values, codes, counters)


def _summary_chunk(shared: "Shipped", chunk: tuple[int, int], progress=None):
    """One chunk of `simulate_summaries` (in this process or on a worker): summaries, codes, counters."""
    model, regimen, times, solver, summarize, rows = shared.value
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


class Shipped:
    """The shared part of a chunked run (models, regimen, summary function...) on its way to workers.

    In this process `.value` is used as it is. Pickled (for a cluster), a built-in model travels as its
    name and changed defaults, and the worker loads it from its own install (its compiled code from the
    worker's cache); another model travels as its definition; a generated module (held e.g. by a fit's
    problem) travels as its source and is loaded from the worker's cache. The bytes are made once and
    kept, so a worker passing the value on does not pickle it again. Functions and lambdas go by value
    (cloudpickle). A value a worker cannot unpack fails the run's tasks with the reason.
    """

    def __init__(self, value, data: bytes | None = None, error: str = ""):
        self._value = value
        self._data = data
        self._error = error

    @property
    def value(self):
        if self._error:  # raised in the task, so the run fails with a message instead of a worker dying
            raise CartkinError(f"this worker cannot unpack the run's shared part: {self._error}")
        return self._value

    def __reduce__(self):
        if self._data is None:
            self._data = _pack(self._value)
        return _unpack, (self._data,)


def _pack(value) -> bytes:
    import io

    import cloudpickle

    class _Pickler(cloudpickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, Model):
                return _reduce_model(obj)
            if isinstance(obj, ModuleType) and obj.__name__.startswith(GENERATED):
                return _generated_module, (obj.__name__, Path(obj.__file__).read_text(encoding="utf-8"))
            return super().reducer_override(obj)

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=5).dump(value)
    return buffer.getvalue()


def _unpack(data: bytes) -> Shipped:
    import pickle
    try:
        return Shipped(pickle.loads(data), data)
    except Exception as exc:  # noqa: BLE001  (reported when a task uses the value)
        return Shipped(None, data, f"{type(exc).__name__}: {exc}")


def _generated_module(name: str, source: str) -> ModuleType:
    """A model's generated module on a worker: this process's, else written to the worker's cache folder (if
    missing) and loaded; numba compiles it once per worker and caches it on disk."""
    return generate.load_module(name.removeprefix(GENERATED), source)


def _reduce_model(model: Model):
    try:
        builtin = load_model(model.name)
    except CartkinError:
        builtin = None
    if builtin is not None and builtin.parameter_names == model.parameter_names:
        defaults = {q.name: q.default for q, b in zip(model.parameter_info, builtin.parameter_info)
                    if q.default != b.default}
        if (builtin.with_defaults(**defaults) if defaults else builtin) == model:
            return _builtin_model, (model.name, defaults)
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    fields["equations"], fields["initial"] = dict(model.equations), dict(model.initial)
    return _model_from_fields, (fields,)


def _builtin_model(name: str, defaults: dict) -> Model:
    model = load_model(name)
    return model.with_defaults(**defaults) if defaults else model


def _model_from_fields(fields: dict) -> Model:
    return Model(**fields)


@dataclass(frozen=True)
class _RowSource:
    n: int
    rows: Callable[[int, int], np.ndarray]

    def __call__(self, first: int, count: int) -> np.ndarray:
        return self.rows(first, count)


def _row_source(model: Model, params) -> _RowSource:
    """Parameter rows on demand: drawn per chunk from a population (anything with `.model`, `.n` and
    `.parameters(first, count)`, such as cartkin.Population), sliced from a matrix otherwise."""
    if all(hasattr(params, a) for a in ("model", "n", "parameters")) and callable(params.parameters):
        if params.model.fingerprint() != model.fingerprint():
            raise CartkinError(f"the population is of model {params.model.name}, not {model.name}")
        return _RowSource(params.n, params.parameters)
    P = parameter_matrix(model, params)
    return _RowSource(P.shape[0], lambda first, count: P[first:first + count])
