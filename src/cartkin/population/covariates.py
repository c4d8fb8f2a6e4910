"""Covariate distributions for virtual patients.

Every distribution turns uniforms in (0, 1) into values with `.sample(u)`, deterministically (inverse
CDF, never rejection), so a patient's covariates depend only on its own counter-based draws.
`support()` gives the (lower, upper) range a distribution can produce, which `Population` checks
against the parameter's bounds before drawing anything.

Several covariates read from one table (e.g. weight and baseline burden of real patients) are drawn
jointly: `EmpiricalTable` picks one row per patient from a single uniform, so columns stay paired.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy.special import ndtr

from ..errors import CartkinError
from .random import normal_quantiles


def _finite(what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise CartkinError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _uniforms(u) -> np.ndarray:
    arr = np.asarray(u, dtype=float)
    if arr.size and not (np.all(arr > 0) and np.all(arr < 1)):
        raise CartkinError("covariate draws must be uniforms strictly between 0 and 1")
    return arr


class Covariate:
    """Base of the covariate distributions: `sample(u)` and `support()`."""

    def sample(self, u: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def support(self) -> tuple[float, float]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class LogNormal(Covariate):
    """Log-normal with the given median and CV% (ω² = ln(1 + CV²)), e.g. baseline leukaemic burden;
    optionally truncated to [lower, upper] (by inverse CDF on the log scale, no rejection loop)."""
    median: float
    cv: float
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self):
        _finite("LogNormal median", self.median)
        _finite("LogNormal cv", self.cv)
        if self.median <= 0:
            raise CartkinError(f"LogNormal median must be > 0, got {self.median}")
        if self.cv < 0:
            raise CartkinError(f"LogNormal cv must be >= 0 %, got {self.cv}")
        for label in ("lower", "upper"):
            value = getattr(self, label)
            if value is not None and (_finite(f"LogNormal {label}", value) <= 0):
                raise CartkinError(f"LogNormal {label} must be > 0, got {value}")
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise CartkinError(f"LogNormal lower ({self.lower}) must be below upper ({self.upper})")
        if self.cv == 0 and not ((self.lower or 0) <= self.median <= (self.upper or math.inf)):
            raise CartkinError(f"LogNormal with cv 0 has its median {self.median} outside [{self.lower}, {self.upper}]")

    @property
    def omega(self) -> float:
        """Standard deviation of the log."""
        return math.sqrt(math.log1p((self.cv / 100.0) ** 2))

    def _log_normal(self) -> Normal:
        return Normal(math.log(self.median), self.omega,
                      lower=None if self.lower is None else math.log(self.lower),
                      upper=None if self.upper is None else math.log(self.upper))

    def sample(self, u: np.ndarray) -> np.ndarray:
        if self.lower is None and self.upper is None:  # the untruncated draws, as before bounds existed
            return self.median * np.exp(self.omega * normal_quantiles(_uniforms(u)))
        if self.cv == 0:
            return np.full(np.shape(u), float(self.median))
        return np.exp(self._log_normal().sample(u))

    def support(self) -> tuple[float, float]:
        if self.cv == 0:
            return self.median, self.median
        return (0.0 if self.lower is None else float(self.lower),
                math.inf if self.upper is None else float(self.upper))


@dataclass(frozen=True)
class Normal(Covariate):
    """Normal(mean, sd), optionally truncated to [lower, upper] by inverse CDF (no rejection loop)."""
    mean: float
    sd: float
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self):
        _finite("Normal mean", self.mean)
        _finite("Normal sd", self.sd)
        if self.sd < 0:
            raise CartkinError(f"Normal sd must be >= 0, got {self.sd}")
        for label in ("lower", "upper"):
            if getattr(self, label) is not None:
                _finite(f"Normal {label}", getattr(self, label))
        lo, hi = self.support()
        if lo > hi or (self.sd > 0 and lo == hi):
            raise CartkinError(f"Normal lower ({self.lower}) must be below upper ({self.upper})")
        if self.sd == 0 and not lo <= self.mean <= hi:
            raise CartkinError(f"Normal with sd 0 has its mean {self.mean} outside [{lo}, {hi}]")
        if self.sd > 0 and self._cdf_range()[2] <= 0:
            raise CartkinError(f"Normal({self.mean}, {self.sd}) has no probability in [{lo}, {hi}]")

    def _cdf_range(self) -> tuple[float, float, float]:
        """(sign, Φ(a), Φ(b) - Φ(a)) for the standardised bounds, reflected into the lower half so the
        inverse CDF keeps its precision far out in a tail."""
        a = -math.inf if self.lower is None else (self.lower - self.mean) / self.sd
        b = math.inf if self.upper is None else (self.upper - self.mean) / self.sd
        sign = 1.0
        if a > 0:  # both bounds above the mean: sample -x on [-b, -a]
            a, b, sign = -b, -a, -1.0
        pa, pb = float(ndtr(a)), float(ndtr(b))
        return sign, pa, pb - pa

    def sample(self, u: np.ndarray) -> np.ndarray:
        u = _uniforms(u)
        if self.sd == 0:
            return np.full(u.shape, float(self.mean))
        sign, pa, width = self._cdf_range()
        x = self.mean + sign * self.sd * normal_quantiles(pa + u * width)
        lo, hi = self.support()
        return np.clip(x, lo, hi)

    def support(self) -> tuple[float, float]:
        lo = -math.inf if self.lower is None else float(self.lower)
        hi = math.inf if self.upper is None else float(self.upper)
        return (self.mean, self.mean) if self.sd == 0 else (lo, hi)


@dataclass(frozen=True)
class Uniform(Covariate):
    """Uniform on [low, high]."""
    low: float
    high: float

    def __post_init__(self):
        _finite("Uniform low", self.low)
        _finite("Uniform high", self.high)
        if self.low > self.high:
            raise CartkinError(f"Uniform low ({self.low}) must not exceed high ({self.high})")

    def sample(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * _uniforms(u)

    def support(self) -> tuple[float, float]:
        return float(self.low), float(self.high)


@dataclass(frozen=True)
class Fixed(Covariate):
    """The same value for every patient (uses no randomness)."""
    value: float

    def __post_init__(self):
        _finite("Fixed value", self.value)

    def sample(self, u: np.ndarray) -> np.ndarray:
        return np.full(np.shape(u), float(self.value))

    def support(self) -> tuple[float, float]:
        return float(self.value), float(self.value)


def _row_index(u, n_rows: int) -> np.ndarray:
    """Row floor(u · n), each row with probability 1/n."""
    u = _uniforms(u)
    return np.minimum((u * n_rows).astype(np.int64), n_rows - 1)


def _read_csv(path: str | Path, columns: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """Numeric columns of a CSV file with a header row; one clear error for each kind of problem."""
    path = Path(path)
    if not path.is_file():
        raise CartkinError(f"covariate file not found: {path}")
    try:
        return _read_rows(path, columns)
    except UnicodeDecodeError as exc:
        raise CartkinError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except csv.Error as exc:
        raise CartkinError(f"{path}: not a readable CSV file ({exc})") from None


def _read_rows(path: Path, columns: Sequence[str]) -> dict[str, tuple[float, ...]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        if not header:
            raise CartkinError(f"{path}: empty file (expected a header row with column names)")
        for column in columns:
            if column not in header:
                raise CartkinError(f"{path}: no column {column!r} (columns: {', '.join(header)})")
        values: dict[str, list[float]] = {c: [] for c in columns}
        for row in reader:
            line = reader.line_num
            for column in columns:
                text = (row.get(column) or "").strip()
                try:
                    x = float(text)
                except ValueError:
                    raise CartkinError(f"{path}, line {line}: {column} = {text!r} is not a number") from None
                if not math.isfinite(x):
                    raise CartkinError(f"{path}, line {line}: {column} = {text!r} is not a finite number")
                values[column].append(x)
    if not columns or not values[columns[0]]:
        raise CartkinError(f"{path}: no data rows")
    return {c: tuple(v) for c, v in values.items()}


@dataclass(frozen=True)
class Empirical(Covariate):
    """Resample observed values (e.g. real patients' weights), each with equal probability."""
    values: tuple[float, ...]
    source: str = ""

    def __post_init__(self):
        try:
            values = tuple(float(v) for v in np.asarray(self.values, dtype=float).ravel())
        except (TypeError, ValueError):
            raise CartkinError(f"Empirical values{_of(self.source)} must be numbers") from None
        if not values:
            raise CartkinError(f"Empirical distribution{_of(self.source)} has no values")
        if not all(math.isfinite(v) for v in values):
            raise CartkinError(f"Empirical distribution{_of(self.source)} has NaN or infinite values")
        object.__setattr__(self, "values", values)

    @classmethod
    def from_csv(cls, path: str | Path, column: str) -> "Empirical":
        """The values of one column of a CSV file with a header row."""
        return cls(_read_csv(path, [column])[column], f"{path}:{column}")

    def sample(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(self.values)[_row_index(u, len(self.values))]

    def support(self) -> tuple[float, float]:
        return min(self.values), max(self.values)


@dataclass(frozen=True)
class EmpiricalTable:
    """Rows of observed covariates, resampled whole: `columns` maps parameter name → values.

    `table["WT"]` is the distribution of one column; give every column you use to a `Population`
    (`covariates=table.distributions()`, or `{"WT": table, "L0": table}`) and each patient gets the
    values of one row, drawn with a single uniform.
    """
    columns: Mapping[str, Sequence[float]]
    source: str = ""

    def __post_init__(self):
        if not isinstance(self.columns, Mapping) or not self.columns:
            raise CartkinError(f"EmpiricalTable{_of(self.source)} needs at least one column")
        data = {}
        for name, values in self.columns.items():
            data[str(name)] = Empirical(values, f"{self.source}:{name}" if self.source else str(name)).values
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise CartkinError(f"EmpiricalTable{_of(self.source)} columns differ in length: {sorted(lengths)}")
        object.__setattr__(self, "columns", data)

    @classmethod
    def from_csv(cls, path: str | Path, columns: Mapping[str, str] | Sequence[str]) -> "EmpiricalTable":
        """Columns of a CSV file: {parameter name: CSV column} (or a list of names used for both)."""
        if isinstance(columns, str) or not isinstance(columns, (Mapping, Sequence)):
            raise CartkinError(f"{path}: columns must map parameter names to CSV columns, e.g. "
                               f"{{\"WT\": \"weight\"}}, got {columns!r}")
        mapping = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
        if not mapping:
            raise CartkinError(f"{path}: name at least one column to read")
        raw = _read_csv(path, list(dict.fromkeys(mapping.values())))
        return cls({name: raw[column] for name, column in mapping.items()}, str(path))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, name: str) -> "TableColumn":
        if name not in self.columns:
            raise CartkinError(f"EmpiricalTable{_of(self.source)} has no column {name!r} "
                               f"(columns: {', '.join(self.names)})")
        return TableColumn(self, name)

    def __hash__(self) -> int:
        return hash((self.source, self.names, self.n_rows))

    def distributions(self) -> dict[str, "TableColumn"]:
        """{name: column distribution} for every column, ready to pass as Population covariates."""
        return {name: TableColumn(self, name) for name in self.columns}

    def rows(self, u: np.ndarray) -> np.ndarray:
        """The row drawn by each uniform."""
        return _row_index(u, self.n_rows)

    def sample(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """{name: values} of the rows drawn by `u` (columns kept together)."""
        index = self.rows(u)
        return {name: np.asarray(values)[index] for name, values in self.columns.items()}


@dataclass(frozen=True)
class TableColumn(Covariate):
    """One column of an `EmpiricalTable`; columns of one table share a patient's row draw."""
    table: EmpiricalTable
    name: str

    def sample(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(self.table.columns[self.name])[self.table.rows(u)]

    def support(self) -> tuple[float, float]:
        values = self.table.columns[self.name]
        return min(values), max(values)


def _of(source: str) -> str:
    return f" ({source})" if source else ""
