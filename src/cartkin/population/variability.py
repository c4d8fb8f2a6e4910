"""Inter-individual variability: log-normal random effects with optional correlations.

θ_i = θ_typical · exp(η_i), η_i ~ N(0, Ω). Each parameter's variance ω² is given either as a CV%
(ω² = ln(1 + CV²), the exact log-normal relation) or directly as `omega`. Correlations are given as
pairs `{("rho", "kappa"): 0.3}` or as a full matrix `(("rho", "kappa"), [[1, 0.3], [0.3, 1]])`.
Ω is always assembled in the model's parameter order, so the order of the dicts never changes draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from numba import njit, prange

from ..errors import CartkinError
from ..model.definition import Model, unknown_name_message


MAX_OMEGA2 = 100.0  # largest log-scale variance: exp(η) of a 7-SD draw stays finite
MAX_CV = 100.0 * math.sqrt(math.expm1(MAX_OMEGA2))  # the same limit as a CV% (about 5.2e23 %)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise CartkinError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _pairs_from_matrix(spec) -> dict[tuple[str, str], float]:
    """(names, matrix) → {(a, b): r} for the non-zero off-diagonal entries."""
    names, matrix = spec
    names = tuple(names)
    if not all(isinstance(q, str) for q in names):
        raise CartkinError("correlation matrix names must be parameter names (strings)")
    if len(set(names)) != len(names):
        raise CartkinError(f"correlation matrix names repeat a parameter: {list(names)}")
    try:
        R = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        raise CartkinError("correlation matrix must be numeric") from None
    k = len(names)
    if R.shape != (k, k):
        raise CartkinError(f"correlation matrix must be {k} x {k} for {k} names, got shape {R.shape}")
    if not np.all(np.isfinite(R)):
        raise CartkinError("correlation matrix has NaN or infinite values")
    if not np.allclose(np.diag(R), 1.0, rtol=0, atol=1e-12):
        raise CartkinError("correlation matrix must have ones on its diagonal")
    if not np.allclose(R, R.T, rtol=0, atol=1e-12):
        raise CartkinError("correlation matrix must be symmetric")
    return {(names[i], names[j]): float(R[i, j]) for i in range(k) for j in range(i + 1, k) if R[i, j] != 0}


@dataclass(frozen=True)
class Variability:
    """Log-normal inter-individual variability: `cv` in % or `omega` variances, plus correlations."""
    cv: Mapping[str, float] = field(default_factory=dict)
    omega: Mapping[str, float] = field(default_factory=dict)
    correlation: Mapping[tuple[str, str], float] | tuple[Sequence[str], object] | None = None

    def __post_init__(self):
        for label in ("cv", "omega"):
            value = getattr(self, label)
            if not isinstance(value, Mapping):
                raise CartkinError(f"variability {label} must map parameter names to numbers")
        cv = {str(k): _number(v, f"CV of {k}") for k, v in self.cv.items()}
        omega = {str(k): _number(v, f"omega of {k}") for k, v in self.omega.items()}
        for name, v in cv.items():
            if v < 0:
                raise CartkinError(f"CV of {name} must be >= 0 %, got {v:g}")
            if v > MAX_CV:
                raise CartkinError(f"CV of {name} must be between 0 and {MAX_CV:.3g} % (omega {MAX_OMEGA2:g}; "
                                   f"beyond it parameters overflow to inf), got {v:g}")
        for name, v in omega.items():
            if v < 0:
                raise CartkinError(f"omega (variance) of {name} must be >= 0, got {v:g}")
            if v > MAX_OMEGA2:
                raise CartkinError(f"omega (variance) of {name} must be between 0 and {MAX_OMEGA2:g} (beyond it "
                                   f"parameters overflow to inf), got {v:g}")
        both = set(cv) & set(omega)
        if both:
            raise CartkinError(f"variability of {sorted(both)[0]} given both as cv and omega; keep one")
        object.__setattr__(self, "cv", cv)
        object.__setattr__(self, "omega", omega)
        corr = self.correlation
        if corr is None:
            corr = {}
        elif isinstance(corr, tuple) and len(corr) == 2 and not isinstance(corr[0], str):
            corr = _pairs_from_matrix(corr)
        elif not isinstance(corr, Mapping):
            raise CartkinError("correlation must be a dict of pairs {('a', 'b'): r} or (names, matrix)")
        pairs: dict[tuple[str, str], float] = {}
        names = self.names
        for pair, r in corr.items():
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise CartkinError(f"correlation key {pair!r} must be a pair of parameter names")
            a, b = pair
            if a == b:
                raise CartkinError(f"correlation of {a} with itself is always 1; name two parameters")
            for p in pair:
                if p not in names:
                    raise CartkinError(f"correlation {a}-{b}: {p} has no variability (give it a cv or omega)")
            r = _number(r, f"correlation {a}-{b}")
            if not -1 < r < 1:
                raise CartkinError(f"correlation {a}-{b} must be between -1 and 1, got {r:g}")
            key = (a, b) if (b, a) not in pairs else (b, a)
            if key in pairs and pairs[key] != r:
                raise CartkinError(f"correlation {a}-{b} is given twice with different values")
            pairs[key] = r
        object.__setattr__(self, "correlation", pairs)
        if pairs:
            try:
                np.linalg.cholesky(self._correlation_matrix(names))
            except np.linalg.LinAlgError:
                raise CartkinError("the correlation matrix is not positive definite; "
                                   "these correlations cannot hold together") from None

    # --- inspection ---------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Parameters with variability (cv ones first, then omega ones)."""
        return tuple(self.cv) + tuple(self.omega)

    def variance(self, name: str) -> float:
        """ω² of one parameter."""
        if name in self.cv:
            return math.log1p((self.cv[name] / 100.0) ** 2)
        if name in self.omega:
            return self.omega[name]
        raise CartkinError(f"parameter {name} has no variability")

    def variances(self) -> np.ndarray:
        """ω² in the order of `names`."""
        return np.array([self.variance(q) for q in self.names])

    def check(self, model: Model) -> None:
        """Raise if a parameter is unknown to `model`."""
        for q in self.names:
            if q not in model.parameter_names:
                raise CartkinError(unknown_name_message("parameter", q, model.parameter_names, model.name))

    def ordered(self, model: Model | None = None) -> tuple[str, ...]:
        """`names` in the model's parameter order (own order without a model)."""
        if model is None:
            return self.names
        self.check(model)
        return tuple(sorted(self.names, key=model.parameter_index))

    def covariance(self, model: Model | None = None) -> np.ndarray:
        """Ω, rows and columns in the order of `ordered(model)`."""
        names = self.ordered(model)
        sd = np.sqrt([self.variance(q) for q in names])
        return self._correlation_matrix(names) * np.outer(sd, sd)

    def cholesky(self, model: Model | None = None) -> np.ndarray:
        """Lower-triangular L with L Lᵀ = Ω (order of `ordered(model)`); works for ω = 0 too."""
        names = self.ordered(model)
        sd = np.sqrt([self.variance(q) for q in names])
        return np.linalg.cholesky(self._correlation_matrix(names)) * sd[:, None]

    def _correlation_matrix(self, names: Sequence[str]) -> np.ndarray:
        R = np.eye(len(names))
        for (a, b), r in self.correlation.items():
            i, j = names.index(a), names.index(b)
            R[i, j] = R[j, i] = r
        return R

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, model: Model, typical: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Parameter matrix θ_i = θ_typical · exp(L z_i).

        typical: n_parameters values (or an n × n_parameters matrix); normals: n × n_parameters standard
        normals in model column order, of which only the columns of parameters with variability are
        used. Columns without variability are the typical values.
        """
        names = model.parameter_names
        z = np.asarray(normals, dtype=float)
        if z.ndim != 2 or z.shape[1] != len(names):
            raise CartkinError(f"normals must be an n x {len(names)} matrix for model {model.name}, "
                               f"got shape {z.shape}")
        base = np.asarray(typical, dtype=float)
        if base.shape not in ((len(names),), (z.shape[0], len(names))):
            raise CartkinError(f"typical must have {len(names)} values (or one row per subject), "
                               f"got shape {base.shape}")
        out = np.array(np.broadcast_to(base, z.shape), dtype=float)
        columns = np.array([model.parameter_index(q) for q in self.ordered(model)], dtype=np.int64)
        if columns.size:
            out[:, columns] = _lognormal(np.ascontiguousarray(out[:, columns]),
                                         np.ascontiguousarray(z[:, columns]), self.cholesky(model))
        return out


@njit(cache=True, parallel=True)
def _lognormal(typical, z, L):
    """typical · exp(L z) row by row, with a fixed summation order (independent of chunking)."""
    n, k = z.shape
    out = np.empty((n, k))
    for i in prange(n):
        for a in range(k):
            eta = 0.0
            for b in range(a + 1):
                eta += L[a, b] * z[i, b]
            out[i, a] = typical[i, a] * np.exp(eta)
    return out
