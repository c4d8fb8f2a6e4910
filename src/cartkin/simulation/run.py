"""simulate / simulate_batch: the Python entry points to the compiled solvers.

Everything here validates input, expands regimens into event arrays and lays subjects out as ragged
arrays (offsets), so one compiled loop over subjects (run in chunks on threads) serves single runs, virtual
populations and fitting alike. method="auto" starts each subject with Dormand–Prince and continues
with Rodas from the moment it detects stiffness.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Mapping, Sequence

import numba
import numpy as np

from ..codegen import compile_model
from ..codegen.lanes import compile_lanes, lane_width
from ..dosing import Regimen
from ..errors import CartkinError
from ..model.definition import Model
from ..model.registry import load_model
from ..progress import as_callback
from ..solve import status as st
from ..solve.common import N_COUNTERS
from ..solve.events import Events, EventTable
from ..solve.lanes import LANE_MODES
from ..solve.solver import Solver
from .results import BatchResult, SimulationResult

#: fewest subjects per chunk handed to a worker thread (see run_chunks)
MIN_CHUNK = 64


def check_times(times) -> np.ndarray:
    """Output times as a float array: finite, >= 0 (day 0 = first infusion), non-decreasing."""
    try:
        arr = np.asarray(times, dtype=float).ravel()
    except (TypeError, ValueError):
        raise CartkinError("times must be numbers") from None
    if arr.size == 0:
        raise CartkinError("times is empty: give at least one output time")
    if not np.all(np.isfinite(arr)):
        raise CartkinError("times contain NaN or infinite values")
    if arr[0] < 0:
        raise CartkinError(f"times must be >= 0 days (day 0 is the first infusion), got {arr[0]}")
    if np.any(np.diff(arr) < 0):
        raise CartkinError("times must be sorted in increasing order")
    return arr


def parameter_matrix(model: Model, params, n_subjects: int | None = None) -> np.ndarray:
    """Parameter rows (n_subjects × n_parameters) from a mapping name → scalar or array.

    Unlisted parameters take their defaults; unknown names, NaN and out-of-bounds values are errors.
    """
    names = model.parameter_names
    if isinstance(params, np.ndarray) and params.ndim != 2:
        raise CartkinError(f"a parameter matrix must be 2-D (subjects × {len(names)} parameters), got "
                           f"{params.ndim}-D shape {params.shape}")
    if isinstance(params, np.ndarray):
        if params.shape[1] != len(names):
            raise CartkinError(f"parameter matrix has {params.shape[1]} columns, model {model.name} "
                               f"has {len(names)} parameters")
        P = np.array(params, dtype=float)
    else:
        params = dict(params or {})
        for key in params:
            model.parameter_index(key)  # raises for unknown names
        for key, value in params.items():
            if np.ndim(value) > 1:
                raise CartkinError(f"parameter {key} must be a number or a 1-D array (one value per subject), "
                                   f"got shape {np.shape(value)}")
        lengths = {np.size(v) for v in params.values() if np.ndim(v) > 0}
        if len(lengths) > 1:
            raise CartkinError(f"parameter arrays differ in length: {sorted(lengths)}")
        n = n_subjects or (lengths.pop() if lengths else 1)
        P = np.empty((n, len(names)))
        for j, name in enumerate(names):
            value = params.get(name, model.parameter(name).default)
            try:
                P[:, j] = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise CartkinError(f"parameter {name} must be numeric, got {value!r}") from None
    if P.shape[0] == 0:
        raise CartkinError("no subjects: the parameter arrays are empty")
    for j, name in enumerate(names):
        col = P[:, j]
        if not np.all(np.isfinite(col)):
            raise CartkinError(f"parameter {name} has NaN or infinite values")
        info = model.parameter(name)
        if np.any(col < info.lower) or np.any(col > info.upper):
            bad = col[(col < info.lower) | (col > info.upper)][0]
            raise CartkinError(f"parameter {name} = {bad:g} is outside its bounds "
                               f"[{info.lower:g}, {info.upper:g}]")
    return P


def solve_subjects(model: Model, P: np.ndarray, times: Sequence[np.ndarray],
                   events: Sequence[Events], solver: Solver = Solver()):
    """Solve subjects with their own output times and dose events (ragged layout).

    events: one `Events` (or (times, amounts, kinds, targets) tuple) per subject.
    Returns (states stacked over subjects, time offsets, status codes, failure times, counters).
    """
    n = P.shape[0]
    t_offsets = np.zeros(n + 1, dtype=np.int64)
    t_offsets[1:] = np.cumsum([len(t) for t in times])
    t_flat = np.concatenate(times).astype(float) if n else np.empty(0)
    return solve_table(model, P, t_flat, t_offsets, EventTable.stack(events), solver)


def solve_shared(model: Model, P: np.ndarray, times: np.ndarray, events: Events, solver: Solver = Solver(),
                 progress=None):
    """Solve subjects that share output times and dose events (the virtual-population case)."""
    n = P.shape[0]
    t_offsets = np.arange(n + 1, dtype=np.int64) * times.size
    return solve_table(model, P, np.tile(times, n), t_offsets, EventTable.repeat(events, n), solver, progress)


def solve_flat(model, P, t_flat, t_offsets, ev, ev_offsets, solver, progress=None):
    """`solve_table` with the events given as (times, amounts, kinds, targets) arrays and their offsets."""
    return solve_table(model, P, t_flat, t_offsets, EventTable.from_arrays(*ev, ev_offsets), solver, progress)


def solve_table(model: Model, P: np.ndarray, t_flat: np.ndarray, t_offsets: np.ndarray, events: EventTable,
                solver: Solver, progress=None):
    """Run the compiled batch loop over subjects laid out in ragged arrays.

    Subject i has output times t_flat[t_offsets[i]:t_offsets[i + 1]] and the events of `events` row i.
    `progress`, if given, is called with the number of subjects finished so far.
    Returns (states stacked over subjects, time offsets, status codes, failure times, counters).
    """
    module = compile_model(model)
    n = P.shape[0]
    out = np.empty((t_flat.size, model.n_states()))
    codes = np.full(n, st.NOT_RUN, dtype=np.int64)
    t_fail = np.full(n, np.nan)
    counters = np.zeros((n, N_COUNTERS), dtype=np.int64)
    P = np.ascontiguousarray(P, dtype=float)
    t_flat = np.ascontiguousarray(t_flat, dtype=float)
    lanes = lane_count(solver)
    lane_kernel = None
    if lanes > 1 and n >= lanes:
        lane_module = compile_lanes(model, lanes)
        lane_kernel = lane_module.batch_solve_lanes_stiff if solver.uses_stiff_lanes else lane_module.batch_solve_lanes
    run_chunks(module.batch_solve, solver, P, t_flat, t_offsets, EventTable.from_arrays(*events), out, codes,
               t_fail, counters, progress, lane_kernel, lanes)
    return out, t_offsets, codes, t_fail, counters


def lane_count(solver: Solver) -> int:
    """Subjects the batch kernel advances in lockstep for `solver`: 1 (the scalar kernel) for the stiff method
    alone or Solver(lanes=1), else Solver.lanes or this machine's width (cartkin.codegen.lanes.lane_width)."""
    if solver.mode not in LANE_MODES:
        return 1
    return lane_width() if solver.lanes is None else solver.lanes


def run_chunks(kernel, solver, P, t_flat, t_offsets, events, out, codes, t_fail, counters, progress=None,
               lane_kernel=None, lanes=1):
    """Call a compiled batch kernel on chunks of subjects, on numba.get_num_threads() threads.

    lane_kernel: the lockstep kernel for `lanes` lanes (cartkin.solve.lanes), used for chunks of at least
    `lanes` subjects; smaller chunks use `kernel`, the scalar one. The kernels release the GIL and each
    subject is solved independently (the lockstep kernel bit-identically to the scalar one), so results do
    not depend on the number of threads, the chunking or the lanes.
    """
    n = P.shape[0]
    if n == 0:
        return
    mode, options = solver.mode, solver.options
    threads = max(1, numba.get_num_threads())
    # at least MIN_CHUNK subjects per chunk: a batch that small runs on the calling thread, since starting
    # the pool costs ~1.5 ms (63 small liu2022 subjects of a SAEM proposal: 1.0 ms serial, 2.4 ms on two
    # threads with chunks of 16; 420 subjects: 7.0 ms serial, 5.3 ms on two)
    size = int(min(max(MIN_CHUNK, n // (threads * 16)), 2048))
    bounds = list(range(0, n, size)) + [n]

    def work(a, b):
        ta, tb = t_offsets[a], t_offsets[b]
        args = (mode, P[a:b], t_flat[ta:tb], t_offsets[a:b + 1] - ta, tuple(events.rows(a, b)), options,
                out[ta:tb], codes[a:b], t_fail[a:b], counters[a:b])
        if lane_kernel is not None and b - a >= lanes:
            lane_kernel(*args, np.zeros(4, dtype=np.int64))
        else:
            kernel(*args)
        return b - a

    chunks = list(zip(bounds[:-1], bounds[1:]))
    if threads == 1 or len(chunks) == 1:
        done = 0
        for a, b in chunks:
            done += work(a, b)
            if progress:
                progress(done)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        done = 0
        for finished in as_completed([pool.submit(work, a, b) for a, b in chunks]):
            done += finished.result()
            if progress:
                progress(done)


def as_solver(solver: Solver | None, rtol: float | None = None, atol: float | None = None,
              method: str | None = None, max_steps: int | None = None, default: Solver = Solver()) -> Solver:
    """The `Solver` of a call: `solver` itself, or `default` with the shorthand keywords given (never both)."""
    given = {k: v for k, v in (("rtol", rtol), ("atol", atol), ("method", method), ("max_steps", max_steps))
             if v is not None}
    if solver is None:
        return dataclasses.replace(default, **given)
    if not isinstance(solver, Solver):
        raise CartkinError(f"solver must be a cartkin.Solver, got {type(solver).__name__}")
    if given:
        raise CartkinError(f"give either solver= or {', '.join(given)}=, not both")
    return solver


def _prepare(model, regimen, times, solver):
    model = load_model(model)
    if regimen is None:
        regimen = Regimen.none()
    if not isinstance(regimen, Regimen):
        raise CartkinError(f"regimen must be a cartkin.Regimen, got {type(regimen).__name__}")
    return model, regimen, check_times(times), solver


def simulate(model: Model | str, regimen: Regimen | None, times, params: Mapping[str, float] | None = None,
             solver: Solver | None = None, *, rtol: float | None = None, atol: float | None = None,
             method: str | None = None, max_steps: int | None = None) -> SimulationResult:
    """Simulate one patient: states at `times` (days) after `regimen`; failures are in `.status`.

    solver: a `cartkin.Solver` (method, rtol, atol, max_steps; default Solver()); rtol, atol, method and
    max_steps are shorthands for building one."""
    model, regimen, times, solver = _prepare(model, regimen, times, as_solver(solver, rtol, atol, method, max_steps))
    for key, value in (params or {}).items():
        if np.ndim(value) != 0:
            raise CartkinError(f"parameter {key} must be a single number in simulate(); "
                               f"use simulate_batch for arrays")
    P = parameter_matrix(model, params, 1)
    events = regimen.events(model)
    out, _, codes, t_fail, counters = solve_subjects(model, P, [times], [events], solver)
    return SimulationResult(model, times, out, P[0], int(codes[0]), float(t_fail[0]), counters[0],
                            solver, regimen)


def simulate_batch(model: Model | str, regimen: Regimen | None, times, params,
                   solver: Solver | None = None, *, rtol: float | None = None, atol: float | None = None,
                   method: str | None = None, max_steps: int | None = None, progress=None,
                   dose_scale=None) -> BatchResult:
    """Simulate many patients on one regimen; `params` maps names to arrays (one value per subject)
    or is an (n_subjects × n_parameters) matrix. Subjects run in parallel inside compiled code
    (numba.set_num_threads sets how many threads). progress: None (a bar on terminals), True, False,
    or a callable taking the number of subjects done. solver: as for `simulate`. dose_scale: one factor
    per subject (>= 0) multiplying every infusion of the regimen, for doses that differ between patients."""
    model, regimen, times, solver = _prepare(model, regimen, times, as_solver(solver, rtol, atol, method, max_steps))
    P = parameter_matrix(model, params)
    events = regimen.events(model)
    n = P.shape[0]
    callback = as_callback(progress, n, f"simulating {n} subjects")
    if dose_scale is None:
        out, _, codes, t_fail, counters = solve_shared(model, P, times, events, solver, callback)
    else:
        scale = np.asarray(dose_scale, dtype=float)
        if scale.shape != (n,) or not np.all(np.isfinite(scale)) or np.any(scale < 0):
            raise CartkinError(f"dose_scale must be {n} finite factors >= 0 (one per subject), got shape "
                               f"{scale.shape}")
        table = EventTable.repeat(events, n)
        table = table._replace(amounts=table.amounts * np.repeat(scale, len(events.times)))
        out, _, codes, t_fail, counters = solve_table(model, P, np.tile(times, n),
                                                      np.arange(n + 1, dtype=np.int64) * times.size, table,
                                                      solver, callback)
    return BatchResult(model, times, out.reshape(n, times.size, model.n_states()), P, codes, t_fail,
                       counters, solver, regimen)
