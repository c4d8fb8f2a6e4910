"""Population fits: SAEM estimates of typical values, Ω, covariate effects and residual error; VPCs."""
from .fit_file import LoadedFit, load_fit
from .results import PopulationEstimates, PopulationResult
from .saem import SaemOptions, fit_population
from .vpc import VpcResult, vpc

__all__ = ["LoadedFit", "load_fit", "PopulationEstimates", "PopulationResult", "SaemOptions", "fit_population",
           "VpcResult", "vpc"]
