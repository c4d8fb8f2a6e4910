"""Virtual populations: variability, covariates and per-subject random streams."""
from .covariates import Empirical, Fixed, LogNormal, Normal, Uniform
from .population import Population
from .variability import Variability

__all__ = ["Population", "Variability", "LogNormal", "Normal", "Uniform", "Fixed", "Empirical"]
