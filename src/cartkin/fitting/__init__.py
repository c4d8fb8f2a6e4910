"""Fitting kinetics data: NONMEM-style data, forward sensitivities, individual maximum likelihood."""
from .data import Dataset, Subject, read_data
from .estimate import FitResult, SubjectFit, fit
from .sensitivities import augmented_model

__all__ = ["Dataset", "Subject", "read_data", "FitResult", "SubjectFit", "fit", "augmented_model"]
