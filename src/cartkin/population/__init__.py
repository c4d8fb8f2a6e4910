"""Virtual populations: variability, covariates and per-subject counter-based random streams."""
from .covariates import Empirical, EmpiricalTable, Fixed, LogNormal, Normal, Uniform
from .population import Population
from .variability import Variability

__all__ = ["Population", "Variability", "LogNormal", "Normal", "Uniform", "Fixed", "Empirical",
           "EmpiricalTable"]
