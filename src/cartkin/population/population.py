"""Virtual populations: typical values, log-normal random effects and covariates, reproducible from a seed.

Draw layout. Subject i's values depend only on (seed, i) and on counters that are fixed per parameter
*name* (see `random.py`: a counter is a draw index; there is no generator state):

    random effect of parameter q     standard normal at counter          key(q)
    covariate distribution of q      uniform at counter          2**48 + key(q)
    EmpiricalTable (joint rows)      uniform at counter          2**48 + key(first of its parameters
                                                                          in model order)
    per-patient dose (a scenario     uniform at counter          2**49 + key("dose")
      regimen's dose distribution)

key(q) is the 64-bit FNV-1a hash of the name, cut to 48 bits. So adding, removing or reordering other
parameters, covariates or random effects never changes a parameter's draws (with correlated random
effects, η = L z mixes the z of correlated parameters, as it must); the same seed gives the same patients
whatever the population size, chunking or number of threads. Counters from 2**50 on are free for later
uses (e.g. residual error).

Bounds. Log-normal random effects keep a parameter positive; every sampled value is still checked
against the parameter's [lower, upper] bounds (e.g. f_blood <= 1), and a covariate distribution whose
range can leave the bounds is refused up front (e.g. an untruncated Normal for a weight).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import CartkinError
from ..model.definition import Model
from ..model.registry import load_model
from .covariates import Covariate, EmpiricalTable, TableColumn
from .random import MAX_SEED, standard_normals_at, uniforms_at
from .variability import Variability

#: counter block of the random effects (standard normals)
ETA_OFFSET = 0
#: counter block of the covariates (uniforms)
COVARIATE_OFFSET = 2 ** 48
#: counter block of per-patient doses (uniforms; `dose_uniforms`)
DOSE_OFFSET = 2 ** 49
#: subjects computed at once by `parameters` (bounds memory for large populations)
CHUNK = 65536


def draw_key(name: str) -> int:
    """The counter of a parameter inside a block: FNV-1a 64 of its name, cut to 48 bits."""
    h = 0xCBF29CE484222325
    for byte in name.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h & (COVARIATE_OFFSET - 1)


def dose_uniforms(seed: int, subjects) -> np.ndarray:
    """One uniform per subject for a per-patient dose (a regimen whose dose is drawn from a distribution):
    a function of (seed, subject) only, so every arm with a dose distribution gives patient i the same
    quantile of its own distribution."""
    return uniforms_at(seed, np.asarray(subjects, dtype=np.int64),
                       np.array([DOSE_OFFSET + draw_key("dose")], dtype=np.int64))[:, 0]


@dataclass(frozen=True, eq=False)
class Population:
    """n virtual patients of `model`; `.parameters()` is their n × n_parameters matrix.

    typical: typical values overriding the model defaults (random effects multiply these).
    variability: log-normal random effects. covariates: parameter name → distribution (LogNormal,
    Normal, Uniform, Fixed, Empirical, or a column of an EmpiricalTable, or the table itself).
    """
    model: Model | str
    n: int
    seed: int = 0
    variability: Variability | None = None
    covariates: Mapping[str, Covariate] | None = None
    typical: Mapping[str, float] | None = None

    def __post_init__(self):
        model = load_model(self.model)
        object.__setattr__(self, "model", model)
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise CartkinError(f"population size must be a positive integer, got {self.n!r}")
        object.__setattr__(self, "n", int(self.n))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or not 0 <= self.seed <= MAX_SEED:
            raise CartkinError(f"seed must be an integer from 0 to 2**64 - 1, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        names = model.parameter_names
        keys = {draw_key(q) for q in names}
        if len(keys) != len(names):  # a 48-bit hash collision: practically impossible
            raise CartkinError(f"model {model.name}: two parameter names share a random-draw key; rename one")
        if self.variability is not None:
            if not isinstance(self.variability, Variability):
                raise CartkinError(f"variability must be a cartkin.Variability, got {type(self.variability).__name__}")
            self.variability.check(model)
        object.__setattr__(self, "typical", self._check_typical(model))
        object.__setattr__(self, "covariates", self._check_covariates(model))

    def _check_typical(self, model: Model) -> dict[str, float]:
        typical = self.typical or {}
        if not isinstance(typical, Mapping):
            raise CartkinError("typical must map parameter names to numbers")
        out = {}
        for name, value in typical.items():
            info = model.parameter(name)  # raises for unknown names
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise CartkinError(f"typical value of {name} must be a number, got {value!r}") from None
            if not np.isfinite(x) or not info.lower <= x <= info.upper:
                raise CartkinError(f"typical value {name} = {x:g} is outside its bounds "
                                   f"[{info.lower:g}, {info.upper:g}]")
            out[name] = x
        return out

    def _check_covariates(self, model: Model) -> dict[str, Covariate]:
        covariates = self.covariates or {}
        if not isinstance(covariates, Mapping):
            raise CartkinError("covariates must map parameter names to distributions")
        varied = set(self.variability.names) if self.variability else set()
        out = {}
        for name, dist in covariates.items():
            info = model.parameter(name)  # raises for unknown names
            if isinstance(dist, EmpiricalTable):
                dist = dist[name]
            if not isinstance(dist, Covariate):
                raise CartkinError(f"covariate {name}: expected a distribution (LogNormal, Normal, Uniform, "
                                   f"Fixed, Empirical or an EmpiricalTable column), got {type(dist).__name__}")
            if name in varied:
                raise CartkinError(f"{name} has both variability and a covariate distribution; keep one")
            lo, hi = dist.support()
            if lo < info.lower or hi > info.upper:
                raise CartkinError(f"covariate {name}: {dist!r} can give values in [{lo:g}, {hi:g}], outside "
                                   f"the parameter's bounds [{info.lower:g}, {info.upper:g}]; truncate it")
            out[name] = dist
        return out

    # --- the draws ------------------------------------------------------------------------------
    def typical_values(self) -> np.ndarray:
        """Typical value of every parameter (model order): model defaults with `typical` overrides."""
        return np.array([self.typical.get(q, d) for q, d in self.model.parameters.items()], dtype=float)

    def parameters(self, first: int = 0, count: int | None = None) -> np.ndarray:
        """Parameter rows of subjects first, ..., first + count - 1 (all n by default)."""
        for label, value in (("first", first), ("count", count)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 0):
                raise CartkinError(f"{label} must be an integer >= 0, got {value!r}")
        count = self.n - first if count is None else count
        if first + count > self.n:
            raise CartkinError(f"subjects {first} to {first + count - 1} requested from a population of {self.n}")
        return self._rows(np.arange(first, first + count, dtype=np.int64))

    def subset(self, indices) -> np.ndarray:
        """Parameter rows of the given subjects (in the order given), computed without the others."""
        arr = np.asarray(indices)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise CartkinError("subset indices must be a one-dimensional sequence of integers")
        if arr.size and (arr.min() < 0 or arr.max() >= self.n):
            raise CartkinError(f"subset indices must lie between 0 and {self.n - 1}")
        return self._rows(arr.astype(np.int64))

    def parameters_dict(self) -> dict[str, np.ndarray]:
        """{parameter name: n values}."""
        P = self.parameters()
        return {q: P[:, j] for j, q in enumerate(self.model.parameter_names)}

    def _rows(self, subjects: np.ndarray) -> np.ndarray:
        model = self.model
        P = np.empty((subjects.size, model.n_parameters()))
        for a in range(0, subjects.size, CHUNK):
            P[a:a + CHUNK] = self._chunk(subjects[a:a + CHUNK])
        self._check_bounds(P, subjects)
        return P

    def _chunk(self, subjects: np.ndarray) -> np.ndarray:
        model = self.model
        typical = self.typical_values()
        block = np.tile(typical, (subjects.size, 1))
        if self.variability is not None and self.variability.names:
            columns = [model.parameter_index(q) for q in self.variability.names]
            counters = [ETA_OFFSET + draw_key(q) for q in self.variability.names]
            z = np.zeros_like(block)
            z[:, columns] = standard_normals_at(self.seed, subjects, np.array(counters, dtype=np.int64))
            block = self.variability.sample(model, typical, z)
        groups = self._covariate_groups()
        if groups:
            counters = np.array([c for c, _ in groups], dtype=np.int64)
            u = uniforms_at(self.seed, subjects, counters)
            for k, (_, members) in enumerate(groups):
                for name, dist in members:
                    block[:, model.parameter_index(name)] = dist.sample(u[:, k])
        return block

    def _covariate_groups(self) -> list[tuple[int, list[tuple[str, Covariate]]]]:
        """(counter, [(name, distribution)]) with the columns of one table sharing one counter."""
        order = sorted(self.covariates, key=self.model.parameter_index)
        groups: list[tuple[object, list[tuple[str, Covariate]]]] = []
        for name in order:
            dist = self.covariates[name]
            if isinstance(dist, TableColumn):
                for table, members in groups:
                    if table is dist.table or table == dist.table:
                        members.append((name, dist))
                        break
                else:
                    groups.append((dist.table, [(name, dist)]))
            else:
                groups.append((None, [(name, dist)]))
        return [(COVARIATE_OFFSET + draw_key(members[0][0]), members) for _, members in groups]

    def _check_bounds(self, P: np.ndarray, subjects: np.ndarray) -> None:
        for j, info in enumerate(self.model.parameter_info):
            col = P[:, j]
            bad = ~((col >= info.lower) & (col <= info.upper))
            if np.any(bad):
                i = int(np.argmax(bad))
                raise CartkinError(f"population: subject {subjects[i]} has {info.name} = {col[i]:g}, outside "
                                   f"its bounds [{info.lower:g}, {info.upper:g}]; lower its variability")

    # --- simulation -----------------------------------------------------------------------------
    def simulate(self, regimen, times, **options):
        """`cartkin.simulate_batch` of every patient on `regimen` (options: rtol, atol, method, ...)."""
        from ..simulation.run import simulate_batch
        return simulate_batch(self.model, regimen, times, self.parameters(), **options)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        varied = list(self.variability.names) if self.variability else []
        return (f"Population({self.model.name!r}, n={self.n}, seed={self.seed}, variability={varied}, "
                f"covariates={list(self.covariates)})")
