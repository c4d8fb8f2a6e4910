"""Former location of the SBML exporter: use `cartkin.model.export.to_sbml` (this name is kept for old imports)."""
from .export.sbml import to_sbml

__all__ = ["to_sbml"]
