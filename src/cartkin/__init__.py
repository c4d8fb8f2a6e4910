"""cartkin: CAR T-cell cellular kinetics.

Symbolic models compiled to numba, solved with dosing events; virtual populations, regimen
comparison and fitting built on top.
"""
from ._version import __version__

from .errors import CartkinError
from . import solve  # noqa: F401  (cartkin.solve: the integrators, public)
from .model import DoseInput, Model, Observable, Parameter, State, list_models, load_model
from .model.export import to_sbml
from .dosing import Infusion, Regimen
from .simulation import (BatchResult, PopulationSummary, SimulationResult, Solver, Status, simulate,
                         simulate_batch, simulate_summaries)
from . import metrics
from .population import Population, Variability
from .scenario import Scenario, compare, default_scenario
from .fitting import fit, fit_population, read_data, vpc

__all__ = ["CartkinError", "solve", "DoseInput", "Model", "Observable", "Parameter", "State",
           "list_models", "load_model", "to_sbml", "Infusion", "Regimen", "BatchResult", "SimulationResult",
           "Solver", "Status", "simulate", "simulate_batch", "simulate_summaries", "PopulationSummary",
           "metrics", "Population", "Variability",
           "Scenario", "compare", "default_scenario", "fit", "read_data",
           "fit_population", "vpc"]
