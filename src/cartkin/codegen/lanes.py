"""Generate and load a model's lane module: its right-hand side, Jacobian, ∂f/∂t and LU over W subjects at
once, and the lockstep batch kernel of `cartkin.solve.lanes` bound to it.

`rhs_lanes` is generated from the same sympy expressions, with the same common-subexpression pass and
printer, as the scalar `rhs` of `generate.py`, for W lanes held as flat structure-of-arrays buffers: row i
of a buffer holds W values, lane l of state i is `Y[i*W + l]` (parameters and derivatives the same way,
`ts` one value per lane). The lane loop has a run-time trip count and a literal row stride, which LLVM
vectorises (zmm registers with AVX-512); exp and log are computed first in a loop of their own (numba has
no vector libm here, so a call inside the main loop would keep it scalar). No fast-math: every lane's
derivatives are bit-identical to the scalar `rhs` (tests/test_lanes.py checks it). `jac_lanes` and
`dfdt_lanes` (for the W-lane Rodas4) are the scalar `jac` and `dfdt` in the same way (`lane_function_source`),
and the W-lane LU comes from `cartkin.solve.linalg.lanes_source`.

The lane module imports the model's scalar functions from its generated module (`compile_model`), so
nothing is compiled twice; it is named by that module's key and W, and numba caches it on disk.
"""
from __future__ import annotations

import functools

import sympy as sp

from ..model.definition import Model
from ..solve import linalg
from ..solve.solver import LANE_WIDTHS
from .generate import GENERATED, MODULE_HEADER, compile_model, load_module, module_key, right_hand_side
from .printer import _Printer, assignments, to_code

ENTRY_TEMPLATE = '''
# ---- the lockstep batch kernel bound to this model (cartkin.solve.lanes) ------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def finish_stiff(t, seg, stops, n_stops, ts, y, p, h, options, t_out, k, out, counters, ev_t, deltas, ev):
    functions = (rhs, jac, dfdt, lu_factor, lu_solve)
    return _finish_stiff(stiff_bound, functions, t, seg, stops, n_stops, ts, y, p, h, options, t_out, k, out, counters,
                         ev_t, deltas, ev)


@njit(cache=True, nogil=True, error_model="numpy")
def first_step(t, y, f0, p, ts, t_end, order, rtol, atol, counters):
    return _initial_step(rhs, t, y, f0, p, ts, t_end, order, rtol, atol, counters)


# the Rodas4 pool's step compiled once as a function of its own (inlined into the kernel, it tripled the
# kernel's compile time)
@njit(cache=True, nogil=True, error_model="numpy")
def rodas_step_lanes(options, buffers, values, flags, integers, t_out, t_offsets, out, codes, t_fail, counters):
    _rodas_step((rhs_lanes, jac_lanes, dfdt_lanes, lu_factor_lanes, lu_solve_lanes), LANES, options, buffers, values,
                flags, integers, t_out, t_offsets, out, codes, t_fail, counters)


'''

# the two lockstep kernels, compiled each on first use: batch_solve_lanes (stiff tails on the scalar Rodas4:
# the constant False lets numba prune the pool's code, ~19 s to compile for il10 instead of ~53 s) and
# batch_solve_lanes_stiff (the W-lane Rodas4 pool)
KERNEL_TEMPLATE = '''
@njit(cache=True, nogil=True, error_model="numpy")
def {name}(mode, P, t_out, t_offsets, events, options, out, codes, t_fail, counters, usage):
    functions = (rhs, jac, dfdt, lu_factor, lu_solve)
    options = (options[0], options[1], options[2], np.array(NONNEGATIVE))
    setup = (initial, dose_increments, breakpoints, N_BREAKPOINTS, WEIGHT_INDEX)
    _solve_lanes(rhs_lanes, first_step, rodas_step_lanes, LANES, N_CALLS, finish_stiff, {stiff_lanes}, mode, functions,
                 setup, P, t_out, t_offsets, events, options, out, codes, t_fail, counters, usage)
'''


@functools.lru_cache(maxsize=1)
def lane_width() -> int:
    """This machine's lane count: 8 with AVX-512 (eight doubles per zmm register), 4 with AVX2, else 2."""
    try:
        from llvmlite import binding
        features = binding.get_host_cpu_features()
    except Exception:  # noqa: BLE001 - no feature list: the narrowest vector width
        return 2
    if features.get("avx512f", False):
        return 8
    if features.get("avx2", False) or features.get("avx", False):
        return 4
    return 2


def _lane_loads(model: Model, W: int) -> list[str]:
    """The statements that read lane _l's parameters, states, time and segment midpoint."""
    return ([f"{q} = _P[{i * W} + _l]" for i, q in enumerate(model.parameter_names)]
            + [f"{s} = _Y[{i * W} + _l]" for i, s in enumerate(model.state_names)]
            + ["t = _T[_l]", "ts = _S[_l]"])


def rhs_lanes_source(model: Model, lanes: int) -> tuple[str, int]:
    """Source of `rhs_lanes(_T, _Y, _P, _S, _OUT, _F, _w)` for `lanes` lanes (the first _w used), and the
    number of exp/log calls it evaluates per lane (the rows of the scratch buffer _F).

    _T: the time of each lane, _S: each lane's segment midpoint `ts` (Piecewise conditions read it)."""
    W = int(lanes)
    exprs = list(right_hand_side(model)[0])
    calls = sorted({a for e in exprs for a in e.atoms(sp.exp, sp.log)}, key=str)
    exprs = [e.subs({c: sp.Symbol(f"_f{k}") for k, c in enumerate(calls)}) for e in exprs]
    load = _lane_loads(model, W)
    lines = ["@njit(cache=True, error_model='numpy')", "def rhs_lanes(_T, _Y, _P, _S, _OUT, _F, _w):"]
    if calls:
        lines += ["    for _l in range(_w):"] + ["        " + x for x in load]
        lines += assignments([f"_F[{k * W} + _l]" for k in range(len(calls))], calls, indent="        ")
    lines += ["    for _l in range(_w):"] + ["        " + x for x in load]
    lines += [f"        _f{k} = _F[{k * W} + _l]" for k in range(len(calls))]
    lines += assignments([f"_OUT[{i * W} + _l]" for i in range(len(exprs))], exprs, indent="        ")
    lines.append("    return")
    return "\n".join(lines), len(calls)


class _CallPrinter(_Printer):
    """The scalar printer, except that the exp/log calls in `calls` are printed as reads of their row of
    the scratch buffer: the expression tree (and so the order of every operation) is the scalar one."""

    def __init__(self, calls: dict, lanes: int):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self._calls = calls
        self._lanes = lanes

    def _print_call(self, expr):
        k = self._calls.get(expr)
        return f"_F[{k * self._lanes} + _l]" if k is not None else self._print_known_func(expr)

    _print_exp = _print_call
    _print_log = _print_call


def lane_function_source(name: str, model: Model, targets: list[str], exprs: list, lanes: int,
                         zeros: list[str] = ()) -> tuple[str, int]:
    """Source of `name(_T, _Y, _P, _S, _OUT, _F, _w)` computing exprs into the W-lane targets with the
    scalar generated code's common subexpressions and printing (`printer.assignments`), and the number of
    exp/log calls it evaluates per lane (rows of _F).

    The calls are evaluated first in a lane loop of their own (with the common subexpressions their
    arguments need, printed as the scalar code prints them), so that the main lane loop holds no libm call
    and LLVM vectorises it; the main loop then reads each call's value from _F. Every operation is the scalar
    one on the same operands, so each lane's values equal the scalar function's bit for bit. zeros: W-lane
    targets set to 0.0 first (the structural zeros of a matrix)."""
    W = int(lanes)
    exprs = [sp.sympify(e) for e in exprs]
    lines = ["@njit(cache=True, error_model='numpy')", f"def {name}(_T, _Y, _P, _S, _OUT, _F, _w):"]
    if zeros:
        lines += ["    for _l in range(_w):"] + [f"        {z} = 0.0" for z in zeros]
    load = _lane_loads(model, W)
    if not exprs:
        return "\n".join(lines + ["    return"]), 0
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_x"))  # as printer.assignments
    calls = []
    for value in [v for _, v in replacements] + list(reduced):
        for c in sorted(value.atoms(sp.exp, sp.log), key=str):
            if c not in calls:
                calls.append(c)
    if calls:
        # the common subexpressions the calls' arguments need, in their order
        needed = set()
        for c in calls:
            needed |= c.free_symbols
        for sym, value in reversed(replacements):
            if sym in needed:
                needed |= value.free_symbols
        lines += ["    for _l in range(_w):"] + ["        " + x for x in load]
        lines += [f"        {sym} = {to_code(value)}" for sym, value in replacements if sym in needed]
        lines += [f"        _F[{k * W} + _l] = {to_code(c)}" for k, c in enumerate(calls)]
    printer = _CallPrinter({c: k for k, c in enumerate(calls)}, W)
    lines += ["    for _l in range(_w):"] + ["        " + x for x in load]
    lines += [f"        {sym} = {printer.doprint(value)}" for sym, value in replacements]
    lines += [f"        {target} = {printer.doprint(value)}" for target, value in zip(targets, reduced)]
    lines.append("    return")
    return "\n".join(lines), len(calls)


def jac_lanes_source(model: Model, lanes: int) -> tuple[str, int]:
    """`jac_lanes`: the scalar `jac` (generate.py) for W lanes, the n×n matrix of lane l at
    `_OUT[(i*n + j)*W + l]`; the structural zeros are written as zeros, as the scalar one does."""
    W = int(lanes)
    dfdy = right_hand_side(model)[1]
    n = dfdy.rows
    entries = [(i, j, dfdy[i, j]) for i in range(n) for j in range(n) if dfdy[i, j] != 0]
    zeros = [f"_OUT[{(i * n + j) * W} + _l]" for i in range(n) for j in range(n) if dfdy[i, j] == 0]
    return lane_function_source("jac_lanes", model, [f"_OUT[{(i * n + j) * W} + _l]" for i, j, _ in entries],
                                [e for _, _, e in entries], W, zeros)


def dfdt_lanes_source(model: Model, lanes: int) -> tuple[str, int]:
    """`dfdt_lanes`: the scalar `dfdt` (generate.py) for W lanes, `_OUT[i*W + l]`."""
    W = int(lanes)
    dfdt = right_hand_side(model)[2]
    return lane_function_source("dfdt_lanes", model, [f"_OUT[{i * W} + _l]" for i in range(dfdt.rows)],
                                list(dfdt), W)


def generate_lane_source(model: Model, lanes: int) -> str:
    """The Python source of `model`'s lane module for `lanes` lanes (imports its generated module)."""
    base = GENERATED + module_key(model)
    body, n_calls = rhs_lanes_source(model, lanes)
    jac_body, n_jac_calls = jac_lanes_source(model, lanes)
    dfdt_body, n_dfdt_calls = dfdt_lanes_source(model, lanes)
    src = [
        f"# Generated by cartkin.codegen.lanes from the symbolic model {model.name!r} for {int(lanes)} lanes.",
        f"# Do not edit: it is rewritten from the model definition (fingerprint {model.fingerprint()}).",
        *MODULE_HEADER,
        f"from {base} import (rhs, jac, dfdt, lu_factor, lu_solve, initial, dose_increments, breakpoints,",
        "                     N_BREAKPOINTS, WEIGHT_INDEX, NONNEGATIVE, stiff_bound)",
        "from cartkin.solve.lanes import finish_stiff as _finish_stiff, rodas_step as _rodas_step, "
        "solve_lanes as _solve_lanes",
        "from cartkin.solve.common import initial_step as _initial_step",
        "from cartkin.solve.linalg import select",
        "",
        f"MODEL_NAME = {model.name!r}",
        f"LANES = {int(lanes)}",
        f"N_CALLS = {max(n_calls, n_jac_calls, n_dfdt_calls, 1)}",
        "",
        body,
        "",
        jac_body,
        "",
        dfdt_body,
        "",
        linalg.lanes_source(model.n_states(), lanes),
        "",
        ENTRY_TEMPLATE,
        KERNEL_TEMPLATE.format(name="batch_solve_lanes", stiff_lanes=False),
        "",
        KERNEL_TEMPLATE.format(name="batch_solve_lanes_stiff", stiff_lanes=True),
    ]
    return "\n".join(src) + "\n"


def compile_lanes(model: Model, lanes: int):
    """The loaded lane module of `model` for `lanes` lanes (`rhs_lanes`, `batch_solve_lanes`, `LANES`)."""
    if lanes not in LANE_WIDTHS or lanes == 1:
        raise ValueError(f"lanes must be one of {LANE_WIDTHS[1:]}, got {lanes!r}")
    compile_model(model)  # the scalar module it imports from is loaded (and registered) first
    return load_module(f"{module_key(model)}_lanes{int(lanes)}", lambda: generate_lane_source(model, lanes))
