"""Exports of a symbolic `Model` to other tools' formats: `to_sbml` (SBML Level 3 Version 2)."""
from ..definition import Model
from .sbml import to_sbml

__all__ = ["to_sbml"]


def _to_sbml_method(self: Model, dose_per_kg: float | None = None) -> str:
    """SBML Level 3 Version 2 text of this model; see `cartkin.model.export.to_sbml`."""
    return to_sbml(self, dose_per_kg)


# Transitional: `Model.to_sbml` stays callable for callers not yet moved to `to_sbml(model)`; it is
# attached here so that definition.py never imports the exporter. Remove once no caller uses it.
Model.to_sbml = _to_sbml_method
