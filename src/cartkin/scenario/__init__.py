"""Scenario files and regimen comparison."""
from .spec import Arm, PopulationSpec, Scenario, default_scenario
from .outcomes import REGISTRY, Outcome, Outcomes, register
from .compare import ArmResult, Comparison, compare

__all__ = ["Arm", "Outcome", "Outcomes", "REGISTRY", "register", "PopulationSpec", "Scenario", "default_scenario",
           "ArmResult", "Comparison", "compare"]
