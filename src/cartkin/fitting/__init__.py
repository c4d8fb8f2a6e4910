"""Fitting kinetics data: NONMEM-style data, forward sensitivities, individual maximum likelihood,
population fits (SAEM) and visual predictive checks."""
from .data import Dataset, Subject, read_data
from .estimate import FitResult, SubjectFit, fit
from .population_model import CovariateEffect
from .population_result import LoadedFit, PopulationResult, load_fit
from .saem import SaemOptions, fit_population
from .sensitivities import augmented_model
from .vpc import VpcResult, vpc

__all__ = ["Dataset", "Subject", "read_data", "FitResult", "SubjectFit", "fit", "augmented_model",
           "CovariateEffect", "LoadedFit", "PopulationResult", "load_fit", "SaemOptions", "fit_population",
           "VpcResult", "vpc"]
