"""Individual fits: each subject's parameters by maximum likelihood, gradients from forward sensitivities."""
from .fit import fit
from .results import FitResult, SubjectFit
from .sensitivities import augmented_model

__all__ = ["fit", "FitResult", "SubjectFit", "augmented_model"]
