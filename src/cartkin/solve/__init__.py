"""Compiled integrators: generic numba templates bound to each model by its generated module.

driver.py owns the loop (doses, breakpoints, output times); dopri5.py and rodas.py each advance
smoothly between two stops; status.py names the outcomes.
"""
from . import status

__all__ = ["status"]
