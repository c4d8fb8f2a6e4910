"""Virtual populations: typical values, random effects and covariates, reproducible from a seed.

Draw layout (so adding a parameter never changes another's draws): random effects use stream 1 with
draw index = the parameter's index in the model; covariates use stream 2 with the same indexing.
Subject i's values depend only on (seed, i).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import CartkinError
from ..model.definition import Model, unknown_name_message
from ..model.registry import load_model
from .random import standard_normals, uniforms
from .variability import Variability

ETA_STREAM = 1
COVARIATE_STREAM = 2


@dataclass(frozen=True, eq=False)
class Population:
    """n virtual patients of `model`: `.parameters()` is their n × n_parameters matrix."""
    model: Model
    n: int
    seed: int = 0
    variability: Variability | None = None
    covariates: Mapping[str, object] | None = None
    typical: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "model", load_model(self.model))
        if not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise CartkinError(f"population size must be a positive integer, got {self.n!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise CartkinError(f"seed must be an integer >= 0, got {self.seed!r}")
        names = self.model.parameter_names
        for name in list((self.variability.names if self.variability else ())) + list(self.covariates or {}) \
                + list(self.typical):
            if name not in names:
                raise CartkinError(unknown_name_message("parameter", name, names, self.model.name))

    def parameters(self, first: int = 0, count: int | None = None) -> np.ndarray:
        """Parameter rows of subjects first ... first + count - 1 (all by default)."""
        count = self.n - first if count is None else count
        model = self.model
        names = model.parameter_names
        P = np.tile([self.typical.get(q, model.parameter(q).default) for q in names], (count, 1)).astype(float)
        if self.variability is not None and self.variability.names:
            idx = [model.parameter_index(q) for q in self.variability.names]
            z_all = standard_normals(self.seed, ETA_STREAM, first, count, len(names))
            eta = z_all[:, idx] @ self.variability.cholesky().T
            P[:, idx] *= np.exp(eta)
        if self.covariates:
            u_all = uniforms(self.seed, COVARIATE_STREAM, first, count, len(names))
            for name, dist in self.covariates.items():
                j = model.parameter_index(name)
                P[:, j] = dist.sample(u_all[:, j])
        for j, name in enumerate(names):
            info = model.parameter(name)
            col = P[:, j]
            if np.any(col < info.lower) or np.any(col > info.upper):
                bad = col[(col < info.lower) | (col > info.upper)][0]
                raise CartkinError(f"population: sampled {name} = {bad:g} is outside its bounds "
                                   f"[{info.lower:g}, {info.upper:g}]; narrow its distribution")
        return P

    def parameters_dict(self) -> dict[str, np.ndarray]:
        P = self.parameters()
        return {q: P[:, j] for j, q in enumerate(self.model.parameter_names)}

    def simulate(self, regimen, times, **options):
        """simulate_batch of every patient on `regimen`."""
        from ..simulation.run import simulate_batch
        return simulate_batch(self.model, regimen, times, self.parameters(), **options)
