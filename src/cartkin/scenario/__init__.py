"""Scenario files and regimen comparison."""
from .spec import Arm, Outcomes, PopulationSpec, Scenario, default_scenario
from .compare import ArmResult, Comparison, compare

__all__ = ["Arm", "Outcomes", "PopulationSpec", "Scenario", "default_scenario", "ArmResult", "Comparison",
           "compare"]
