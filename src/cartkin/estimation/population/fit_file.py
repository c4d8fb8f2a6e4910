"""fit.json: a population fit as a file, written and read back in one place.

`fit_json(result)` is what `cartkin fit --population` writes beside its tables; `load_fit(folder)` reads
it back (with ``with_data=True`` the data too, as the fit read them) for `cartkin vpc` and scenario files.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ...data.dataset import read_data
from ...dosing import Infusion, Regimen
from ...errors import CartkinError
from ...model.registry import load_model
from ...solve.solver import Solver
from ...stats.covariates import CovariateEffect
from .model import PopulationModel
from .results import PopulationEstimates

FIT_FILE = "fit.json"
FORMAT = "cartkin-population-fit-1"


def fit_json(result) -> dict:
    pm = result.pm
    return {
        "format": FORMAT,
        "model": pm.model.name,
        "parameters": list(pm.parameters),
        "fixed": pm.fixed,
        "error": pm.error,
        "observables": list(pm.observables),
        "omega_structure": result.omega_structure,
        "covariate_effects": [{"parameter": e.parameter, "covariate": e.covariate, "kind": e.kind,
                               "reference": e.reference} for e in pm.effects],
        "estimates": {
            "typical": result.typical,
            "coefficients": result.coefficients,
            "omega": result.omega.tolist(),
            "sigma": result.sigma,
            "fixed_effects": result.estimates.fixed_effects.tolist(),
        },
        "standard_errors": dict(zip(result.parameter_names, _json_numbers(result.standard_errors))),
        "likelihood": {"minus2loglik": result.ofv, "importance_sampling_se": result.ofv_se, "aic": result.aic,
                       "bic": result.bic, "n_estimated": result.n_estimated,
                       "n_subjects": pm.data.n_subjects, "n_observations": pm.data.n_observations},
        "converged": result.converged,
        "warnings": list(result.warnings),
        "settings": result.settings,
        "solver": {"method": pm.solver.method, "rtol": pm.solver.rtol, "atol": pm.solver.atol},
        "regimen": _regimen_json(pm.regimen),
        "data": result.data_source,
        "timings_seconds": result.timings,
    }


def _json_numbers(values) -> list:
    return [float(v) if math.isfinite(v) else None for v in values]


def json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _regimen_json(regimen) -> list | None:
    if regimen is None:
        return None
    return [{"time": d.time, "dose_per_kg": d.dose_per_kg, "cells": d.cells, "amount": d.amount,
             "target": d.target} for d in regimen]


def _regimen_from_json(items):
    if items is None:
        return None
    return Regimen([Infusion(**item) for item in items])


@dataclass(eq=False)
class LoadedFit:
    """A population fit read from its folder: settings and estimates (and the data when asked for)."""
    folder: Path
    info: dict
    pm: PopulationModel | None
    estimates: PopulationEstimates

    @property
    def model_name(self) -> str:
        return self.info["model"]

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(self.info["parameters"])

    @property
    def typical(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.info["estimates"]["typical"].items()}

    @property
    def fixed(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.info.get("fixed", {}).items()}

    @property
    def omega(self) -> np.ndarray:
        return self.estimates.omega

    @property
    def effects(self) -> tuple[CovariateEffect, ...]:
        return tuple(CovariateEffect(e["parameter"], e["covariate"], e["kind"], e["reference"])
                     for e in self.info.get("covariate_effects", []))

    @property
    def coefficients(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.info["estimates"].get("coefficients", {}).items()}


def load_fit(fitdir, with_data: bool = True) -> LoadedFit:
    """Read a population fit folder (fit.json); with_data re-reads the data as the fit read them."""
    folder = Path(fitdir)
    path = folder / FIT_FILE
    if not folder.is_dir():
        raise CartkinError(f"fit folder not found: {folder}")
    if not path.is_file():
        raise CartkinError(f"{folder} has no {FIT_FILE}: not a population fit folder (run cartkin fit --population)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CartkinError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CartkinError(f"{path}: not a cartkin population fit (format {FORMAT} expected)")
    try:
        model = load_model(info["model"])
        est = info["estimates"]
        q = len(info["parameters"])
        omega = np.array(est["omega"], dtype=float).reshape(q, q)
        estimates = PopulationEstimates(np.array(est["fixed_effects"], dtype=float), omega,
                                        np.array([est["sigma"][k] for k in est["sigma"]], dtype=float))
    except (KeyError, TypeError, ValueError) as exc:
        raise CartkinError(f"{path}: incomplete or damaged fit file ({exc})") from None
    pm = None
    if with_data:
        source = info.get("data") or {}
        files = source.get("files") or []
        if not files:
            raise CartkinError(f"{path}: the fit does not record its data files")
        paths = [folder / f if source.get("relative_to_fit") else Path(f) for f in files]
        for p in paths:
            if not p.is_file():
                raise CartkinError(f"data file not found: {p} (the fit in {folder} read its data from there)")
        options = _read_options(source.get("options") or {})
        data = read_data(paths, model, **options)
        solver = info.get("solver", {})
        pm = PopulationModel(model, data, info["parameters"], info.get("fixed", {}), info["error"],
                             [CovariateEffect(e["parameter"], e["covariate"], e["kind"], e["reference"])
                              for e in info.get("covariate_effects", [])],
                             _regimen_from_json(info.get("regimen")),
                             Solver(str(solver.get("method", "auto")), float(solver.get("rtol", 1e-6)),
                                    float(solver.get("atol", 1e-9))))
        if tuple(pm.observables) != tuple(info.get("observables", pm.observables)):
            raise CartkinError(f"{path}: the data now hold observables {', '.join(pm.observables)}, the fit used "
                               f"{', '.join(info['observables'])}")
    return LoadedFit(folder, info, pm, estimates)


def _read_options(options: Mapping) -> dict:
    allowed = ("column_map", "dvid_map", "covariates", "lloq", "censor_floor", "dose_unit", "prefix_ids",
               "baseline", "positive")
    return {k: v for k, v in options.items() if k in allowed}

