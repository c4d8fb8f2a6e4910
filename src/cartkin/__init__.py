"""cartkin: CAR T-cell cellular kinetics.

Symbolic models compiled to numba, solved with dosing events; virtual populations, regimen
comparison and fitting built on top. Those upper layers (and scipy.optimize with them) are imported on
first use, so running a model does not pay for them.
"""
import importlib

from ._version import __version__
from .errors import CartkinError
from . import solve  # noqa: F401  (cartkin.solve: the integrators, public)
from .model import DoseInput, Model, Observable, Parameter, State, list_models, load_model
from .model.export import to_sbml
from .dosing import Infusion, Regimen
from .simulation import (BatchResult, PopulationSummary, SimulationResult, Solver, Status, simulate,
                         simulate_batch, simulate_summaries)

#: public names imported on first access: name -> module that defines it
_LAZY = {
    "metrics": ".metrics",
    "Population": ".population", "Variability": ".population",
    "Scenario": ".scenario", "compare": ".scenario", "default_scenario": ".scenario",
    "load_scenario": ".scenario", "list_scenarios": ".scenario", "run_trials": ".scenario",
    "read_data": ".data",
    "fit": ".estimation", "fit_population": ".estimation", "load_fit": ".estimation", "vpc": ".estimation",
    "calibrate": ".calibration",
    "write": ".report", "plot": ".report",
}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        value = module if name == "metrics" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cartkin' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["CartkinError", "solve", "DoseInput", "Model", "Observable", "Parameter", "State",
           "list_models", "load_model", "to_sbml", "Infusion", "Regimen", "BatchResult", "SimulationResult",
           "Solver", "Status", "simulate", "simulate_batch", "simulate_summaries", "PopulationSummary",
           "metrics", "Population", "Variability",
           "Scenario", "compare", "default_scenario", "load_scenario", "list_scenarios", "run_trials", "fit",
           "read_data",
           "fit_population", "vpc", "load_fit", "calibrate", "write", "plot"]
