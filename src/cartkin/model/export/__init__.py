"""Exports of a symbolic `Model` to other tools' formats: `to_sbml` (SBML Level 3 Version 2)."""
from .sbml import to_sbml

__all__ = ["to_sbml"]
