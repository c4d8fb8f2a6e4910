"""Dosing as explicit event records (mrgsolve style), expanded into arrays before solving.

An `Infusion` is one event: a time and exactly one of a dose per kg (cells/kg), a flat dose (cells),
or an amount in the target state's own units. A `Regimen` is an ordered tuple of infusions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .errors import CartkinError
from .model.definition import Model
from .solve.events import AMOUNT, FLAT, PER_KG, Events

__all__ = ["Infusion", "Regimen", "Events", "PER_KG", "FLAT", "AMOUNT"]


@dataclass(frozen=True)
class Infusion:
    """One infusion: `Infusion(0, dose_per_kg=1e5)`, `Infusion(1, cells=5e6)` or `Infusion(0, amount=16.5, target="nTN")`."""
    time: float = 0.0
    dose_per_kg: float | None = None
    cells: float | None = None
    amount: float | None = None
    target: str | None = None

    def __post_init__(self):
        given = [k for k in ("dose_per_kg", "cells", "amount") if getattr(self, k) is not None]
        if len(given) != 1:
            raise CartkinError("an infusion needs exactly one of dose_per_kg, cells or amount "
                               f"(got {', '.join(given) or 'none'})")
        value = getattr(self, given[0])
        _check_number(f"infusion {given[0]}", value)
        if value < 0:
            raise CartkinError(f"infusion {given[0]} must not be negative (got {value})")
        _check_number("infusion time", self.time)
        if self.time < 0:
            raise CartkinError(f"infusion time must be >= 0 days (day 0 is the first infusion), got {self.time}")

    @property
    def kind(self) -> int:
        return PER_KG if self.dose_per_kg is not None else FLAT if self.cells is not None else AMOUNT

    @property
    def value(self) -> float:
        return float(next(v for v in (self.dose_per_kg, self.cells, self.amount) if v is not None))


@dataclass(frozen=True)
class Regimen:
    """An ordered set of infusions."""
    infusions: tuple[Infusion, ...] = ()

    def __init__(self, infusions: Iterable[Infusion] = ()):
        items = tuple(infusions)
        for item in items:
            if not isinstance(item, Infusion):
                raise CartkinError(f"a regimen holds Infusion records, not {type(item).__name__}")
        object.__setattr__(self, "infusions", tuple(sorted(items, key=lambda d: d.time)))

    @classmethod
    def single(cls, dose_per_kg: float | None = None, *, cells: float | None = None,
               time: float = 0.0) -> "Regimen":
        """One infusion at `time` (day 0 by default)."""
        return cls([Infusion(time, dose_per_kg=dose_per_kg, cells=cells)])

    @classmethod
    def split(cls, total_per_kg: float, fractions: Sequence[float] = (0.1, 0.3, 0.6),
              days: Sequence[float] = (0, 1, 2)) -> "Regimen":
        """A total dose per kg given as fractions on successive days (e.g. 10/30/60%)."""
        _check_number("split dosing: total_per_kg", total_per_kg)
        for label, values in (("fractions", fractions), ("days", days)):
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
                raise CartkinError(f"split dosing: {label} must be a list of numbers, got {values!r}")
            for i, v in enumerate(values):
                _check_number(f"split dosing: {label}[{i}]", v)
        fractions = [float(f) for f in fractions]
        days = [float(d) for d in days]
        if len(fractions) != len(days):
            raise CartkinError(f"split dosing: {len(fractions)} fractions but {len(days)} days")
        if any((not math.isfinite(f)) or f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
            raise CartkinError(f"split dosing: fractions must be >= 0 and sum to 1 (got {list(fractions)})")
        return cls([Infusion(d, dose_per_kg=total_per_kg * f) for f, d in zip(fractions, days)])

    @classmethod
    def none(cls) -> "Regimen":
        """No infusion (the model's initial state only)."""
        return cls([])

    def __len__(self) -> int:
        return len(self.infusions)

    def __iter__(self):
        return iter(self.infusions)

    @property
    def total_per_kg(self) -> float:
        """Sum of the per-kg doses (flat doses and amounts are not included)."""
        return float(sum(d.dose_per_kg for d in self.infusions if d.dose_per_kg is not None))

    def describe(self) -> str:
        if not self.infusions:
            return "no infusion"
        parts = []
        for d in self.infusions:
            unit = {PER_KG: "cells/kg", FLAT: "cells", AMOUNT: "units"}[d.kind]
            parts.append(f"{d.value:.3g} {unit} on day {d.time:g}")
        return "; ".join(parts)

    def events(self, model: Model) -> Events:
        """The infusions as `Events` arrays (times, amounts, kinds, targets) for the compiled solver."""
        n = len(self.infusions)
        times = np.empty(n)
        amounts = np.empty(n)
        kinds = np.empty(n, dtype=np.int64)
        targets = np.empty(n, dtype=np.int64)
        for i, d in enumerate(self.infusions):
            if d.kind != AMOUNT and model.dose is None:
                raise CartkinError(f"model {model.name} has no cell-dose input; give its initial state through "
                                   f"parameters, or use Infusion(time, amount=..., target=STATE)")
            if d.kind == FLAT and model.dose.weight is None:
                raise CartkinError(f"model {model.name} has no body-weight parameter for flat doses; use dose_per_kg")
            target = d.target or (model.dose.target if model.dose is not None else None)
            if target is None:
                raise CartkinError(f"model {model.name}: an amount infusion needs a target state")
            times[i] = d.time
            amounts[i] = d.value
            kinds[i] = d.kind
            targets[i] = model.state_index(target)
        return Events(times, amounts, kinds, targets)


def _check_number(label: str, value) -> None:
    if isinstance(value, (str, bytes, bool)):  # float("0.5") would pass, and fail later in arithmetic
        raise CartkinError(f"{label} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CartkinError(f"{label} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise CartkinError(f"{label} must be finite, got {value!r}")
