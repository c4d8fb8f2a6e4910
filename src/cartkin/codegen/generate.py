"""Generate and load the numba module for a model.

From one symbolic `Model` this writes a Python file holding `@njit(cache=True)` functions: the
right-hand side, its state Jacobian and time derivative, the initial state, observables, the dose scale
and the dose increments of every state (`dose_increments`: per cell/kg, and the extra per cell of a flat
dose; see `DoseInput`), breakpoints, and compiled entry points that bind these to the generic integrators in `cartkin.solve`.
Parameter derivatives (dfdp, dinitial_dp, dobserve_dy, dobserve_dp, ddose_scale_dp) are generated only
on request (`derivatives=True`): the solvers do not use them. Everything compiles with numba's
`error_model="numpy"`: a division by zero gives inf/nan, which the integrators report as a non-finite
status, instead of raising from compiled code (and without a zero check on every division). The file lives in a cache folder and is
named by a hash of the model and of the solver sources, so numba's on-disk cache stays valid until
either changes. An existing file is loaded as it is: its name says what it was generated from, so
sympy's differentiation and common-subexpression passes run once per model, not once per process.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import sympy as sp

from .._version import __version__
from ..model.definition import Model, t
from ..solve import linalg
from ..solve.methods import AUTO, METHODS
from .printer import assignments, to_code

_TS = sp.Symbol("ts")  # time used in Piecewise conditions (the segment midpoint)
#: LLVM fast-math flags for the generated code: none. With contraction/reassociation (1-8% faster per il10
#: subject) a freshly compiled module and the same module loaded from numba's cache gave results that
#: differed in the last bits (a process that compiled a model disagreed with every later process and with
#: Dask workers), which breaks "same seed, same numbers". tests/test_codegen.py checks fresh == cached.
FAST_MATH: set[str] = set()
_LOADED: dict[str, ModuleType] = {}
#: name prefix of every generated module
GENERATED = "cartkin_gen_"

ENTRY_TEMPLATE = '''
# ---- entry points binding this model to the generic integrators ------------------------------------
from {explicit_module} import advance as _explicit
from {stiff_module} import advance as _stiff
from cartkin.solve.subject import solve_subject as _solve_subject


@njit(cache=True, nogil=True, error_model="numpy")
def observe_batch(t_out, t_offsets, Y, P, out):
    for s in range(P.shape[0]):
        for i in range(t_offsets[s], t_offsets[s + 1]):
            observe(t_out[i], Y[i], P[s], out[i])


# {stiff} compiled once as a function of its own, which batch_solve and the lane kernel
# (cartkin.codegen.lanes) both call: inlined into each, it doubled the lane kernel's compile time.
@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST_MATH)
def stiff_advance(t, t_end, y, p, ts, h, options, t_out, k, out, counters):
    return _stiff((rhs, jac, dfdt, lu_factor, lu_solve), t, t_end, y, p, ts, h, options, t_out, k, out, counters,
                  False)


@njit(inline="always")
def stiff_bound(functions, t, t_end, y, p, ts, h, options, t_out, k, out, counters, detect_stiff):
    """stiff_advance with the signature of a method's `advance` (the driver passes functions itself)."""
    return stiff_advance(t, t_end, y, p, ts, h, options, t_out, k, out, counters)


# The batch loop is sequential and releases the GIL: cartkin.simulation runs chunks of subjects on a
# thread pool. (parallel=True/prange costs ~6 s more compile time per loop for no speed gain here.)
# mode (cartkin.solve.driver): 0 = {explicit} only, 1 = {stiff} only, 2 = auto ({explicit}, {stiff} once stiff).
# events: (times, amounts, kinds, targets, offsets) of cartkin.solve.EventTable; options: (rtol, atol, max_steps).
@njit(cache=True, nogil=True, error_model="numpy", fastmath=FAST_MATH)
def batch_solve(mode, P, t_out, t_offsets, events, options, out, codes, t_fail, counters):
    ev_t, ev_amount, ev_kind, ev_target, ev_offsets = events
    functions = (rhs, jac, dfdt, lu_factor, lu_solve)
    options = (options[0], options[1], options[2], np.array(NONNEGATIVE))
    setup = (initial, dose_increments, breakpoints, N_BREAKPOINTS, WEIGHT_INDEX)
    for i in range(P.shape[0]):
        a, b = t_offsets[i], t_offsets[i + 1]
        c, d = ev_offsets[i], ev_offsets[i + 1]
        codes[i], t_fail[i] = _solve_subject(
            _explicit, stiff_bound, mode, functions, setup, P[i], t_out[a:b], ev_t[c:d], ev_amount[c:d],
            ev_kind[c:d], ev_target[c:d], options, out[a:b], counters[i])
'''


def _piecewise_conditions_at_ts(expr: sp.Expr) -> sp.Expr:
    """Evaluate Piecewise conditions at the segment time `ts` so one step never mixes branches."""
    def fix(*pairs):
        return sp.Piecewise(*[(e, c.subs(t, _TS)) for e, c in pairs])
    return sp.sympify(expr).replace(sp.Piecewise, fix)


#: the imports every generated module starts with (this one's and the lane modules of cartkin.codegen.lanes)
MODULE_HEADER = [
    "import math",
    "import warnings",
    "import numpy as np",
    "from numba import njit",
    "",
    "# the model's functions travel to the integrators as tuples, which numba types as first-class functions",
    "warnings.filterwarnings('ignore', message='First-class function type feature is experimental')",
    "",
]


def right_hand_side(model: Model) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """(f, ∂f/∂y, ∂f/∂t) of `model`, Piecewise conditions read at `ts`: the expressions `rhs`, `jac` and
    `dfdt` are generated from, here and for W lanes (cartkin.codegen.lanes)."""
    f = sp.Matrix([_piecewise_conditions_at_ts(model.equations[s]) for s in model.state_names])
    return f, f.jacobian([sp.Symbol(s) for s in model.state_names]), f.diff(t)


def generate_source(model: Model, derivatives: bool = False) -> str:
    """The Python source of the numba module for `model` (with parameter derivatives if asked)."""
    sx = [sp.Symbol(s) for s in model.state_names]
    px = [sp.Symbol(q) for q in model.parameter_names]
    ns, npar = len(sx), len(px)
    f, dfdy, dfdt_expr = right_hand_side(model)
    y0 = sp.Matrix([sp.sympify(model.initial.get(s, 0)) for s in model.state_names])
    g = sp.Matrix([sp.sympify(o.expression) for o in model.observable_info])
    scale = sp.sympify(model.dose.per_kg) if model.dose else sp.Integer(0)
    # dose increments of every state: row 0 per cell/kg, row 1 the extra per cell of a flat dose
    increments = sp.Matrix([model.dose.per_kg_vector(model.state_names), model.dose.flat_vector(model.state_names)]
                           if model.dose else sp.zeros(2, ns))
    bps = [sp.sympify(b) for b in model.breakpoints]
    weight_index = model.parameter_names.index(model.dose.weight) if (model.dose and model.dose.weight) else -1

    def unpack(states: bool) -> list[str]:
        lines = [f"    {q} = p[{i}]" for i, q in enumerate(model.parameter_names)]
        if states:
            lines += [f"    {s} = y[{i}]" for i, s in enumerate(model.state_names)]
        return lines

    def dense(name: str, args: str, mat: sp.Matrix, states: bool, zero: bool) -> list[str]:
        entries = [(i, j, mat[i, j]) for i in range(mat.rows) for j in range(mat.cols) if mat[i, j] != 0]
        lines = ["@njit(cache=True, error_model='numpy', fastmath=FAST_MATH)", f"def {name}({args}):"]
        lines += unpack(states)
        if zero:
            lines.append("    out[:] = 0.0")
        lines += assignments([f"out[{i}, {j}]" for i, j, _ in entries], [e for _, _, e in entries])
        lines.append("    return")
        return lines

    def vector(name: str, args: str, vec: list, states: bool) -> list[str]:
        lines = ["@njit(cache=True, error_model='numpy', fastmath=FAST_MATH)", f"def {name}({args}):"]
        lines += unpack(states)
        lines += assignments([f"out[{i}]" for i in range(len(vec))], vec)
        lines.append("    return")
        return lines

    src = [
        f"# Generated by cartkin.codegen from the symbolic model {model.name!r}. Do not edit:",
        f"# it is rewritten from the model definition (fingerprint {model.fingerprint()}).",
        *MODULE_HEADER,
        f"MODEL_NAME = {model.name!r}",
        f"N_STATES = {ns}",
        f"N_PARAMETERS = {npar}",
        f"N_OBSERVABLES = {g.rows}",
        f"N_BREAKPOINTS = {len(bps)}",
        f"WEIGHT_INDEX = {weight_index}",
        "NONNEGATIVE = (" + "".join(f"{st.nonnegative}, " for st in model.states) + ")",
        f"FAST_MATH = {set(FAST_MATH)!r}",
        "",
    ]
    src += vector("rhs", "t, y, p, ts, out", list(f), True) + [""]
    src += dense("jac", "t, y, p, ts, out", dfdy, True, True) + [""]
    src += vector("dfdt", "t, y, p, ts, out", list(dfdt_expr), True) + [""]
    src += vector("initial", "p, out", list(y0), False) + [""]
    src += vector("observe", "t, y, p, out", list(g), True) + [""]
    src += ["@njit(cache=True, error_model='numpy')", "def dose_scale(p):"] + unpack(False) + [f"    return {to_code(scale)}", ""]
    # no fast-math here (as dose_scale): a dose must scale exactly as written, e.g. f_blood / 70000
    src += [line.replace(", fastmath=FAST_MATH", "") for line in dense("dose_increments", "p, out", increments, False, True)]
    src += [""]
    if derivatives:
        src += dense("dfdp", "t, y, p, ts, out", f.jacobian(px), True, True) + [""]
        src += dense("dinitial_dp", "p, out", y0.jacobian(px), False, True) + [""]
        src += dense("dobserve_dy", "t, y, p, out", g.jacobian(sx) if g.rows else sp.zeros(0, ns), True, True) + [""]
        src += dense("dobserve_dp", "t, y, p, out", g.jacobian(px) if g.rows else sp.zeros(0, npar), True, True)
        src += [""] + vector("ddose_scale_dp", "p, out", list(sp.Matrix([scale]).jacobian(px)), False) + [""]
    src += vector("breakpoints", "p, out", bps, False) + [""]
    src.append(linalg.source(ns))
    explicit, stiff = METHODS[AUTO.explicit], METHODS[AUTO.stiff]
    src.append(ENTRY_TEMPLATE.format(explicit=explicit.name, stiff=stiff.name, explicit_module=explicit.module,
                                     stiff_module=stiff.module))
    return "\n".join(src) + "\n"


@functools.lru_cache(maxsize=1)
def _solver_hash() -> str:
    """Hash of the integrator sources: generated modules are rebuilt when the solvers change.

    Read once per process (compile_model is called on every solve)."""
    root = Path(__file__).resolve().parent.parent  # the cartkin package folder
    h = hashlib.sha256(__version__.encode())
    for folder in ("solve", "codegen"):
        for path in sorted((root / folder).rglob("*.py")):
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cache_dir() -> Path:
    """Where generated modules and numba's cache live (CARTKIN_CACHE_DIR, else ~/.cache/cartkin)."""
    env = os.environ.get("CARTKIN_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cartkin"
    return base / "generated"


def module_key(model: Model, derivatives: bool = False) -> str:
    """The name of `model`'s generated module: model name, fingerprint and solver-source hash."""
    return f"{model.name}_{model.fingerprint()}_{_solver_hash()}" + ("_derivatives" if derivatives else "")


def compile_model(model: Model, derivatives: bool = False) -> ModuleType:
    """The loaded numba module for `model`, generating its source only if no file holds it yet.

    derivatives: also generate the parameter-derivative kernels (dfdp, dinitial_dp, dobserve_dy,
    dobserve_dp, ddose_scale_dp), which the solvers do not use.
    """
    return load_module(module_key(model, derivatives), lambda: generate_source(model, derivatives))


def load_module(key: str, source) -> ModuleType:
    """The generated module named GENERATED + `key`: this process's copy, else the cache folder's file,
    written first (atomically) from `source` (the text, or a function giving it) when it is missing."""
    if key in _LOADED:
        return _LOADED[key]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = GENERATED + key
    path = folder / f"{name}.py"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(source() if callable(source) else source)
        os.replace(tmp, path)  # atomic: concurrent processes never see half a file
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _LOADED[key] = module
    return module
