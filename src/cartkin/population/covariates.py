"""Covariate distributions for virtual patients, each a deterministic function of uniform draws."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import ndtr, ndtri

from ..errors import CartkinError


def _finite(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise CartkinError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class LogNormal:
    """Log-normal with the given median and CV% (e.g. baseline leukaemic burden)."""
    median: float
    cv: float

    def __post_init__(self):
        _finite("LogNormal median", self.median)
        _finite("LogNormal cv", self.cv)
        if self.median <= 0 or self.cv < 0:
            raise CartkinError(f"LogNormal needs median > 0 and cv >= 0 (got {self.median}, {self.cv})")

    def sample(self, u: np.ndarray) -> np.ndarray:
        omega = math.sqrt(math.log(1 + (self.cv / 100) ** 2))
        return self.median * np.exp(omega * ndtri(u))


@dataclass(frozen=True)
class Normal:
    """Normal, optionally truncated to [lower, upper] (by inverse CDF, so no rejection loop)."""
    mean: float
    sd: float
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self):
        _finite("Normal mean", self.mean)
        _finite("Normal sd", self.sd)
        if self.sd < 0:
            raise CartkinError(f"Normal sd must be >= 0, got {self.sd}")
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise CartkinError(f"Normal lower ({self.lower}) must be below upper ({self.upper})")

    def sample(self, u: np.ndarray) -> np.ndarray:
        if self.sd == 0:
            return np.full(u.shape, self.mean)
        a = ndtr((self.lower - self.mean) / self.sd) if self.lower is not None else 0.0
        b = ndtr((self.upper - self.mean) / self.sd) if self.upper is not None else 1.0
        if b - a < 1e-12:
            raise CartkinError(f"Normal({self.mean}, {self.sd}) has no mass in [{self.lower}, {self.upper}]")
        x = self.mean + self.sd * ndtri(a + u * (b - a))
        lo = -np.inf if self.lower is None else self.lower
        hi = np.inf if self.upper is None else self.upper
        return np.clip(x, lo, hi)


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def __post_init__(self):
        _finite("Uniform low", self.low)
        _finite("Uniform high", self.high)
        if self.low > self.high:
            raise CartkinError(f"Uniform low ({self.low}) must not exceed high ({self.high})")

    def sample(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * u


@dataclass(frozen=True)
class Fixed:
    value: float

    def __post_init__(self):
        _finite("Fixed value", self.value)

    def sample(self, u: np.ndarray) -> np.ndarray:
        return np.full(u.shape, float(self.value))


@dataclass(frozen=True, eq=False)
class Empirical:
    """Resample observed values (e.g. real patients' weights) with equal probability."""
    values: tuple[float, ...]
    source: str = ""

    def __post_init__(self):
        if len(self.values) == 0:
            raise CartkinError(f"Empirical distribution {self.source} has no values")
        if not all(math.isfinite(v) for v in self.values):
            raise CartkinError(f"Empirical distribution {self.source} has non-finite values")

    @classmethod
    def from_csv(cls, path: str | Path, column: str) -> "Empirical":
        path = Path(path)
        if not path.is_file():
            raise CartkinError(f"covariate file not found: {path}")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise CartkinError(f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])})")
            values = []
            for line, row in enumerate(reader, start=2):
                text = (row[column] or "").strip()
                try:
                    values.append(float(text))
                except ValueError:
                    raise CartkinError(f"{path}, line {line}: {column} = {text!r} is not a number") from None
        return cls(tuple(values), f"{path}:{column}")

    def sample(self, u: np.ndarray) -> np.ndarray:
        values = np.asarray(self.values, dtype=float)
        index = np.minimum((u * values.size).astype(np.int64), values.size - 1)
        return values[index]
