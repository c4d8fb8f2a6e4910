"""Inter-individual variability: log-normal random effects with an optional correlation."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import CartkinError


@dataclass(frozen=True)
class Variability:
    """θ_i = θ_typical · exp(η_i), η ~ N(0, Ω). Give CV% (`cv={"rho": 40}`, ω² = ln(1 + CV²)) or
    variances (`omega={"rho": 0.15}`), and correlations as `{("rho", "kappa"): 0.3}`."""
    cv: Mapping[str, float] = field(default_factory=dict)
    omega: Mapping[str, float] = field(default_factory=dict)
    correlation: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self):
        both = set(self.cv) & set(self.omega)
        if both:
            raise CartkinError(f"variability of {sorted(both)[0]} given both as cv and omega; keep one")
        for name, v in {**self.cv, **self.omega}.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise CartkinError(f"variability of {name} must be a number >= 0, got {v!r}")
        for pair, r in self.correlation.items():
            if len(pair) != 2 or any(p not in self.names for p in pair):
                raise CartkinError(f"correlation {pair}: both parameters need a variability")
            if not -1 < r < 1:
                raise CartkinError(f"correlation {pair} must be between -1 and 1, got {r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.cv) + tuple(self.omega)

    def variances(self) -> np.ndarray:
        return np.array([math.log(1 + (self.cv[n] / 100) ** 2) for n in self.cv]
                        + [float(self.omega[n]) for n in self.omega])

    def cholesky(self) -> np.ndarray:
        """Lower Cholesky factor of Ω (error if the correlations are not positive definite)."""
        names = self.names
        sd = np.sqrt(self.variances())
        R = np.eye(len(names))
        for (a, b), r in self.correlation.items():
            i, j = names.index(a), names.index(b)
            R[i, j] = R[j, i] = r
        try:
            return np.linalg.cholesky(R) * sd[:, None]
        except np.linalg.LinAlgError:
            raise CartkinError("the correlation matrix is not positive definite") from None
