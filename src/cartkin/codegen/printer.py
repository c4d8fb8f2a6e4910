"""sympy expressions → Python source lines that numba compiles (scalars only, `math` functions)."""
from __future__ import annotations

from typing import Sequence

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter


class _Printer(PythonCodePrinter):
    """Python printer that writes `math.exp` etc. and plain float literals."""

    def _print_Rational(self, expr):
        return f"({float(expr.p)!r}/{float(expr.q)!r})"

    def _print_Integer(self, expr):
        return str(int(expr))  # integer powers stay integer (x**2 compiles to x*x)

    def _print_Float(self, expr):
        return repr(float(expr))


_printer = _Printer({"fully_qualified_modules": True, "standard": "python3"})


def to_code(expr: sp.Expr) -> str:
    return _printer.doprint(expr)


def assignments(targets: Sequence[str], exprs: Sequence[sp.Expr], indent: str = "    ") -> list[str]:
    """Lines computing each target from its expression, with common subexpressions shared."""
    exprs = [sp.sympify(e) for e in exprs]
    if not exprs:
        return []
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_x"))
    lines = [f"{indent}{sym} = {to_code(val)}" for sym, val in replacements]
    lines += [f"{indent}{target} = {to_code(val)}" for target, val in zip(targets, reduced)]
    return lines
