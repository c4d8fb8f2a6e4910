"""Simulation: expand regimens into events, call the compiled solvers, wrap results."""
from .results import BatchResult, SimulationResult, Status
from ..solve.solver import Solver
from .run import simulate, simulate_batch, solve_subjects
from .stream import PopulationSummary, exposure, simulate_summaries

__all__ = ["BatchResult", "SimulationResult", "Status", "Solver", "simulate", "simulate_batch",
           "solve_subjects", "PopulationSummary", "exposure", "simulate_summaries"]
