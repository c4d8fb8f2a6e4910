"""`Solver`: the integration method and its tolerances, validated once (diffrax style)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import CartkinError
from .methods import AUTO, METHODS, method_names

#: loosest relative tolerance accepted: beyond it the error control no longer keeps solutions accurate
MAX_RTOL = 1e-2
#: loosest absolute tolerance accepted (in state units: cells/µL, cells, ...)
MAX_ATOL = 1e-2
#: lane counts of the lockstep kernel (`cartkin.solve.lanes`) a Solver accepts; 1 = the scalar kernel
LANE_WIDTHS = (1, 2, 4, 8, 16)
#: by default (stiff_lanes None) the lockstep kernel's Rodas4 pool is used from this rtol up: there most il10
#: subjects turn stiff and it pays (1.36x the scalar kernel at 1e-4 against 1.10x with scalar Rodas4 tails);
#: at 1e-6 ~10% do and it gains nothing measurable, while its kernel costs ~44 s to compile (README, Benchmarks)
STIFF_LANES_RTOL = 1e-5


@dataclass(frozen=True)
class Solver:
    """Integrator choice and tolerances.

    method: a name in `cartkin.solve.methods.METHODS` ("dopri5", "rodas") or "auto" (a driver mode:
    dopri5, then rodas once stiff). rtol: relative tolerance, at most MAX_RTOL; atol: absolute
    tolerance, at most MAX_ATOL; max_steps: step budget per subject. lanes: how many subjects the batch
    kernel advances in lockstep (`cartkin.solve.lanes`, for "dopri5" and "auto"): None for this machine's
    vector width (8 with AVX-512, 4 with AVX2), 1 for the scalar kernel, or one of LANE_WIDTHS. Results
    are the same bit for bit whatever it is; only the speed changes. stiff_lanes: in "auto", whether the
    lockstep kernel finishes subjects that turn stiff in its W-lane Rodas4 pool (True) or each on its lane
    with the scalar Rodas4 (False); None: the pool from rtol STIFF_LANES_RTOL up. Same numbers either way.
    """
    method: str = "auto"
    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 100_000
    lanes: int | None = None
    stiff_lanes: bool | None = None

    def __post_init__(self):
        if self.method not in method_names():
            raise CartkinError(f"unknown method {self.method!r}; choose one of {', '.join(method_names())}")
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise CartkinError(f"{name} must be a positive number, got {v!r}")
        if self.rtol > MAX_RTOL:
            raise CartkinError(f"rtol {self.rtol:g} is too loose: at most {MAX_RTOL:g} (looser tolerances give "
                               f"wrong answers, not faster right ones)")
        if self.atol > MAX_ATOL:
            raise CartkinError(f"atol {self.atol:g} is too loose: at most {MAX_ATOL:g} (in the states' units)")
        if int(self.max_steps) < 1:
            raise CartkinError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.lanes is not None and (isinstance(self.lanes, bool) or not isinstance(self.lanes, int)
                                       or self.lanes not in LANE_WIDTHS):
            raise CartkinError(f"lanes must be None (this machine's width) or one of "
                               f"{', '.join(map(str, LANE_WIDTHS))}, got {self.lanes!r}")
        if not (self.stiff_lanes is None or isinstance(self.stiff_lanes, bool)):
            raise CartkinError(f"stiff_lanes must be None, True or False, got {self.stiff_lanes!r}")

    @property
    def uses_stiff_lanes(self) -> bool:
        """Whether the lockstep kernel runs its Rodas4 pool for this solver (auto mode only)."""
        if self.method != AUTO.name:
            return False
        return self.rtol >= STIFF_LANES_RTOL if self.stiff_lanes is None else bool(self.stiff_lanes)

    @property
    def mode(self) -> int:
        """The driver mode: driver.EXPLICIT, driver.STIFF or driver.AUTO."""
        from .driver import AUTO as AUTO_MODE, EXPLICIT, STIFF
        if self.method == AUTO.name:
            return AUTO_MODE
        return STIFF if METHODS[self.method].stiff else EXPLICIT

    @property
    def options(self) -> tuple[float, float, int]:
        """(rtol, atol, max_steps) as the compiled solver takes them."""
        return float(self.rtol), float(self.atol), int(self.max_steps)
