"""Kinetics data: NONMEM-style files read into subjects with observations, censoring, doses and covariates."""
from .dataset import Dataset, Subject, read_data

__all__ = ["Dataset", "Subject", "read_data"]
