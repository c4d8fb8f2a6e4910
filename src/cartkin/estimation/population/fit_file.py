"""fit.json: a population fit as a file, written and read back in one place.

`fit_json(result)` is what `cartkin fit --population` writes beside its tables; `load_fit(folder)` reads
it back (with ``with_data=True`` the data too, as the fit read them) for `cartkin vpc` and scenario files.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...data.dataset import read_data
from ...dosing import Infusion, Regimen
from ...errors import CartkinError
from ...model.registry import load_model
from ...solve.solver import Solver
from ...stats.covariates import CovariateEffect
from ...stats.error_models import error_model
from ...stats.priors import LogNormalPrior
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
        _check_estimates(info, model)
        q = len(info["parameters"])
        omega = np.array(est["omega"], dtype=float).reshape(q, q)
        estimates = PopulationEstimates(np.array(est["fixed_effects"], dtype=float), omega,
                                        np.array([est["sigma"][k] for k in est["sigma"]], dtype=float))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # CartkinError is a ValueError
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
        _check_hashes(path, paths, source.get("sha256"))
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


MAX_OMEGA2 = 100.0  # variance of a log parameter: beyond it exp(η) overflows for ordinary draws


def _check_estimates(info: dict, model) -> None:
    """Refuse estimates no fit can produce (a hand-edited or damaged fit.json) before anything is simulated."""
    est = info["estimates"]
    names = info["parameters"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CartkinError("parameters must be a non-empty list of names")
    for n in names:
        model.parameter_index(n)
    try:
        error = error_model(info.get("error"))
    except CartkinError as exc:
        raise CartkinError(f"error: {exc}") from None
    q = len(names)
    n_effects = len(info.get("covariate_effects", []))
    fixed = np.array(est["fixed_effects"], dtype=float)
    if fixed.shape != (q + n_effects,) or not np.all(np.isfinite(fixed)):
        raise CartkinError(f"estimates.fixed_effects must be {q + n_effects} finite numbers (one per parameter and "
                           f"covariate effect), got {est['fixed_effects']!r}")
    if not np.all(np.isfinite(np.exp(fixed[:q]))) or np.any(np.exp(fixed[:q]) == 0):
        raise CartkinError("estimates.fixed_effects: a typical value overflows (exp of the log value)")
    omega = np.array(est["omega"], dtype=float)
    if omega.shape != (q, q) or not np.all(np.isfinite(omega)) or not np.allclose(omega, omega.T):
        raise CartkinError(f"estimates.omega must be a symmetric {q} x {q} matrix of finite numbers")
    if np.any(np.diag(omega) > MAX_OMEGA2):
        raise CartkinError(f"estimates.omega: a variance above {MAX_OMEGA2:g} (log scale) makes parameters overflow "
                           f"to inf, got {np.diag(omega).max():g}")
    if np.any(np.diag(omega) < 0) or np.linalg.eigvalsh(omega).min() < -1e-10 * max(1.0, np.abs(omega).max()):
        raise CartkinError("estimates.omega is not positive semi-definite (not a covariance matrix)")
    sigma = est["sigma"]
    expected = error.sigma_names(info.get("observables") or [])
    if not isinstance(sigma, dict) or (info.get("observables") and set(sigma) != set(expected)):
        raise CartkinError(f"estimates.sigma must give {', '.join(expected) or 'the residual SDs'}, got "
                           f"{', '.join(sigma) if isinstance(sigma, dict) else repr(sigma)}")
    for k, v in sigma.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise CartkinError(f"estimates.sigma.{k} must be a finite number > 0, got {v!r}")


def file_sha256(path) -> str:
    """The sha256 of a file's content (hex), recorded in fit.json for each data file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_hashes(fit_path: Path, paths: list[Path], recorded) -> None:
    """Refuse data files whose content changed since the fit; a fit.json without hashes (written by an
    older cartkin) is accepted with a warning."""
    if recorded is None:
        print(f"cartkin: warning: {fit_path} records no content hash of its data files (an older cartkin wrote "
              f"it); cannot check that {', '.join(p.name for p in paths)} are unchanged since the fit",
              file=sys.stderr)
        return
    if not isinstance(recorded, list) or len(recorded) != len(paths):
        raise CartkinError(f"{fit_path}: data.sha256 must hold one hash per data file")
    for p, digest in zip(paths, recorded):
        if file_sha256(p) != digest:
            raise CartkinError(f"data file {p} changed since the fit in {fit_path.parent} (its sha256 differs "
                               f"from the one in {fit_path.name}); refit, or restore the file")


def _read_options(options: Mapping) -> dict:
    allowed = ("column_map", "dvid_map", "covariates", "lloq", "censor_floor", "dose_unit", "prefix_ids",
               "baseline", "positive")
    return {k: v for k, v in options.items() if k in allowed}


def priors_from_fit(source, names: Sequence[str]) -> dict[str, LogNormalPrior]:
    """Priors for `names` from a population fit (folder or LoadedFit): typical value and sqrt(ω²) each.

    Parameters the population fit did not estimate are left without prior (so they are fitted by ML). A
    parameter with a covariate effect in the population fit is refused: its typical value holds at the
    reference covariate value only, so one prior for every subject would be wrong for the others."""
    loaded = source if isinstance(source, LoadedFit) else load_fit(source, with_data=False)
    with_effects = [f"{e.parameter} (covariate {e.covariate})" for e in loaded.effects if e.parameter in names]
    if with_effects:
        raise CartkinError(f"--prior {loaded.folder}: the population fit has covariate effects on "
                           f"{', '.join(with_effects)}, which priors from it would ignore; refit without them, or "
                           f"give those priors as --prior NAME=MEDIAN:SD")
    typical = loaded.typical
    params = list(loaded.parameters)
    out = {}
    for name in names:
        if name in params and name in typical:
            k = params.index(name)
            out[name] = LogNormalPrior(typical[name], math.sqrt(max(float(loaded.omega[k, k]), 0.0)))
    if not out:
        raise CartkinError(f"--prior {loaded.folder}: the population fit estimated none of "
                           f"{', '.join(names)} (it estimated {', '.join(params)})")
    return out
