"""Estimation from kinetics data: individual maximum-likelihood fits (with profiles) and population fits
(SAEM) with visual predictive checks. Results are plain data; `cartkin.report` writes and draws them."""
from .individual import FitResult, SubjectFit, augmented_model, fit
from .population import (LoadedFit, PopulationResult, SaemOptions, VpcResult, fit_population, load_fit,
                         vpc)

__all__ = ["FitResult", "SubjectFit", "fit", "augmented_model", "LoadedFit", "PopulationResult", "load_fit",
           "SaemOptions", "fit_population", "VpcResult", "vpc"]
