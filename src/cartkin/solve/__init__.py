"""Compiled integrators: generic numba templates bound to each model by its generated module.

solver.py holds `Solver` (method and tolerances); methods/ holds one module per method and the
registry `METHODS`; driver.py owns the loop (doses, breakpoints, output times); events.py the dose
kinds and event arrays; status.py names the outcomes.
"""
from . import status
from .events import AMOUNT, FLAT, PER_KG, Events, EventTable
from .methods import AUTO, METHODS, Method
from .solver import Solver

__all__ = ["status", "Solver", "METHODS", "Method", "AUTO", "Events", "EventTable", "PER_KG", "FLAT", "AMOUNT"]
