"""Shared by `compare` and the trial replicates: a scenario's population, each arm's parameters, and the
per-patient outcomes of a solved batch.

Arm parameter overrides move the typical value and keep each patient's random effect: θ_i = θ_arm · exp(η_i).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..population import Population, Variability
from .spec import Arm, PopulationSpec, Scenario


@dataclass(frozen=True, eq=False)
class ArmResult:
    """One arm's outcomes: time courses of the reported observables and per-patient outcome arrays."""
    arm: Arm
    times: np.ndarray
    curves: dict  # observable name -> n_patients × n_times (those the outcomes keep for figures)
    outcomes: dict  # per-patient outcome name (e.g. "cmax") -> per-patient array
    ok: np.ndarray
    failures: dict


def population_for(scenario: Scenario, spec: PopulationSpec | None = None, n: int | None = None) -> Population:
    """The scenario's virtual population (spec: another PopulationSpec, e.g. of one calibration draw;
    n: its size, default spec.n)."""
    spec = spec or scenario.population
    variability = Variability(cv=dict(spec.variability_cv), correlation=dict(spec.correlation)) \
        if spec.variability_cv else None
    return Population(scenario.model, spec.n if n is None else n, seed=spec.seed, variability=variability,
                      covariates=dict(spec.covariates) or None, typical=dict(spec.typical) or None)


def arm_parameters(scenario: Scenario, base: np.ndarray, arm: Arm, spec: PopulationSpec | None = None) -> np.ndarray:
    """The population's parameter matrix with the arm's typical-value overrides (random effects kept);
    spec: the PopulationSpec `base` was drawn from (default the scenario's)."""
    spec = spec or scenario.population
    P = base.copy()
    model = scenario.model
    for name, value in arm.parameters.items():
        j = model.parameter_index(name)
        typical = spec.typical.get(name, model.parameter(name).default)
        if name in spec.variability_cv and typical != 0:
            P[:, j] = base[:, j] * (value / typical)
        else:
            P[:, j] = value
    return apply_covariate_effects(model, P, spec.covariate_effects)


def apply_covariate_effects(model, P: np.ndarray, effects) -> np.ndarray:
    """Covariate effects of a population fit on each patient's parameters (`CovariateEffect.factor`),
    c the patient's value of the covariate parameter."""
    for effect, coefficient in effects:
        P[:, model.parameter_index(effect.parameter)] *= effect.factor(P[:, model.parameter_index(effect.covariate)],
                                                                        coefficient)
    return P


class _Lookup(dict):
    """name -> per-patient array, computed on first use (an observable of the batch, a parameter column)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, name):
        value = self[name] = self.make(name)
        return value


def arm_outcomes(scenario: Scenario, arm: Arm, batch, P, dose_scale=None) -> ArmResult:
    """The outcomes of `scenario` for one arm's solved batch (parameters P; dose_scale: per-patient dose
    factors, recorded as dose_per_kg); failed patients get NaN."""
    model, times = scenario.model, batch.times
    observables = _Lookup(batch.observable)
    parameters = _Lookup(lambda name: P[:, model.parameter_index(name)])
    curves = {}
    outcomes = {}
    for outcome, settings in scenario.outcomes:
        outcomes.update(outcome.compute(times, observables, parameters, settings))
        for name in outcome.curves(settings):
            curves[name] = observables[name]
    ok = batch.ok
    for key, value in outcomes.items():  # failed patients never count as numbers
        value = np.asarray(value, dtype=float)
        value[~ok] = np.nan
        outcomes[key] = value
    if dose_scale is not None:  # each patient's own dose per kg (a regimen with a dose distribution)
        outcomes["dose_per_kg"] = arm.nominal_dose * np.asarray(dose_scale, dtype=float)
    return ArmResult(arm, times, curves, outcomes, ok, batch.failures())
