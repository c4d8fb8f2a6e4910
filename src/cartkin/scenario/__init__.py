"""Scenario files, built-in scenarios, regimen comparison and trial replicates."""
from .spec import (Arm, Observed, PopulationSpec, Scenario, TrialSpec, list_scenarios, builtin_scenarios,
                   default_scenario, load_scenario)
from .outcomes import REGISTRY, Outcome, Outcomes, register
from .arms import ArmResult
from .trials import TrialResult, run_trials
from .compare import Comparison, compare

__all__ = ["Arm", "Outcome", "Outcomes", "REGISTRY", "register", "PopulationSpec", "Scenario", "default_scenario",
           "load_scenario", "list_scenarios", "builtin_scenarios", "Observed", "TrialSpec", "TrialResult",
           "run_trials", "ArmResult", "Comparison", "compare"]
