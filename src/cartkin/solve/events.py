"""Dose events as the compiled solver reads them: the dose kinds and the event arrays.

A dose kind says how an event's amount enters the state: PER_KG (cells/kg, times the model's dose
scale), FLAT (cells, divided by the body-weight parameter first) or AMOUNT (already in the target
state's units). `Events` holds one subject's events; `EventTable` stacks many subjects' events in
ragged arrays with offsets (subject i owns rows offsets[i]:offsets[i + 1]).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

PER_KG = 0
FLAT = 1
AMOUNT = 2


class Events(NamedTuple):
    """One subject's dose events: times (days), amounts, kinds (PER_KG/FLAT/AMOUNT), target state indices."""
    times: np.ndarray
    amounts: np.ndarray
    kinds: np.ndarray
    targets: np.ndarray

    @classmethod
    def empty(cls) -> "Events":
        return cls(np.empty(0), np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))


class EventTable(NamedTuple):
    """Many subjects' events in ragged arrays: the fields of `Events`, concatenated, plus offsets."""
    times: np.ndarray
    amounts: np.ndarray
    kinds: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_arrays(cls, times, amounts, kinds, targets, offsets) -> "EventTable":
        """A table with the dtypes the compiled solver expects (float, float, int64, int64, int64)."""
        return cls(np.asarray(times, dtype=float), np.asarray(amounts, dtype=float),
                   np.asarray(kinds, dtype=np.int64), np.asarray(targets, dtype=np.int64),
                   np.asarray(offsets, dtype=np.int64))

    @classmethod
    def stack(cls, events: Sequence[Events]) -> "EventTable":
        """Each subject's own events, in subject order."""
        offsets = np.zeros(len(events) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(e[0]) for e in events])
        if not events:
            return cls.from_arrays(*Events.empty(), offsets)
        return cls.from_arrays(*(np.concatenate([e[k] for e in events]) for k in range(4)), offsets)

    @classmethod
    def repeat(cls, events: Events, n: int) -> "EventTable":
        """The same events for n subjects."""
        offsets = np.arange(n + 1, dtype=np.int64) * len(events[0])
        return cls.from_arrays(*(np.tile(e, n) for e in events), offsets)

    def rows(self, first: int, last: int) -> "EventTable":
        """The events of subjects first..last-1, offsets rebased to start at 0."""
        a, b = self.offsets[first], self.offsets[last]
        return EventTable(self.times[a:b], self.amounts[a:b], self.kinds[a:b], self.targets[a:b],
                          self.offsets[first:last + 1] - a)
