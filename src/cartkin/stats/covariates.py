"""Covariate effects on a parameter's typical value (one definition, used by fits and scenarios).

log θ_i = log θ_typical + β · x_i, x_i = log(c_i / c_ref) ("power") or c_i − c_ref ("exp").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CartkinError

COVARIATE_KINDS = ("power", "exp")


@dataclass(frozen=True)
class CovariateEffect:
    """A covariate effect on an estimated parameter: ``CovariateEffect("rTA0", "nB0", "power")``.

    reference: the covariate value at which the typical value applies (None: the median of the data).
    """
    parameter: str
    covariate: str
    kind: str = "power"
    reference: float | None = None

    def __post_init__(self):
        if self.kind not in COVARIATE_KINDS:
            raise CartkinError(f"covariate effect {self.parameter}={self.covariate}: unknown kind {self.kind!r}; "
                               f"choose one of {', '.join(COVARIATE_KINDS)}")

    @property
    def name(self) -> str:
        """The coefficient's name, e.g. ``beta_rTA0_nB0``."""
        return f"beta_{self.parameter}_{self.covariate}"

    @classmethod
    def parse(cls, text: str) -> "CovariateEffect":
        """``PARAMETER=COVARIATE[:power|exp]`` (power by default)."""
        left, sep, right = str(text).partition("=")
        covariate, _, kind = right.partition(":")
        if not sep or not left.strip() or not covariate.strip():
            raise CartkinError(f"covariate effect {text!r}: expected PARAMETER=COVARIATE[:power|exp]")
        return cls(left.strip(), covariate.strip(), kind.strip() or "power")

    def factor(self, values: np.ndarray, coefficient: float) -> np.ndarray:
        """The multiplier of the parameter: (c / c_ref)^β (power) or exp(β (c − c_ref)) (exp)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.exp(coefficient * self.transform(values))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """x = log(c / c_ref) (power) or c − c_ref (exp)."""
        c = np.asarray(values, dtype=float)
        if self.kind == "power":
            return np.log(c / self.reference)
        return c - self.reference

