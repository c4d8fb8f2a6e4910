"""A minimal terminal progress bar: shown only on a terminal, and only once work lasts over a second."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class ProgressBar:
    """Callable with the number of items done; draws `label [#####.....] done/total eta` on stderr."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, enabled: bool | None = None,
                 delay: float = 1.0):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = isatty if enabled is None else enabled
        self.delay = delay
        self.start = time.perf_counter()
        self.shown = False

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if elapsed < self.delay and done < self.total:
            return
        if elapsed < self.delay and not self.shown:
            return  # finished before the bar was worth showing
        frac = min(done / self.total, 1.0)
        width = 30
        bar = "#" * int(round(frac * width))
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        self.stream.write(f"\r{self.label} [{bar:<{width}}] {done}/{self.total} "
                          f"{elapsed:5.1f}s elapsed, {eta:5.1f}s left ")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
        self.shown = True


def as_callback(progress, total: int, label: str) -> Callable[[int], None] | None:
    """progress=None: a bar on terminals; True: always; False: none; a callable is used as it is."""
    if progress is False:
        return None
    if callable(progress):
        return progress
    return ProgressBar(total, label, enabled=True if progress is True else None)
