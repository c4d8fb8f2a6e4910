"""Everything a result writes or draws: tables, figures and output folders, apart from the numerics.

`write(result, folder)` and `plot(result, folder)` take any result (individual fit, population fit, VPC,
comparison, calibration) and return the files they wrote. What a result needs (matplotlib above all) is imported on first
use, so `cartkin.report.output` stays cheap for every command.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CartkinError


def write(result, folder) -> list[Path]:
    """The result's table files (CSV, Markdown, fit.json) in `folder` (created if missing)."""
    from . import writers
    from ..estimation.individual.results import FitResult
    from ..estimation.population.results import PopulationResult
    from ..estimation.population.vpc import VpcResult
    from ..scenario.compare import Comparison
    from ..calibration.engine import Calibration
    if isinstance(result, Calibration):
        from .calibration import write_calibration
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return write_calibration(result, folder)
    for kind, writer in ((FitResult, writers.write_fit), (PopulationResult, writers.write_population_fit),
                         (VpcResult, writers.write_vpc), (Comparison, writers.write_comparison)):
        if isinstance(result, kind):
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            return writer(result, folder)
    raise CartkinError(f"cannot write a {type(result).__name__}: not a cartkin result")


def plot(result, folder) -> list[Path]:
    """The result's figures as PNG files in `folder` (created if missing)."""
    from ..estimation.individual.results import FitResult
    from ..estimation.population.results import PopulationResult
    from ..estimation.population.vpc import VpcResult
    from ..scenario.compare import Comparison
    from ..calibration.engine import Calibration
    folder = Path(folder)
    if isinstance(result, Calibration):
        from .calibration import calibration_figure
        folder.mkdir(parents=True, exist_ok=True)
        return [calibration_figure(result, folder / "calibration.png")]
    if isinstance(result, FitResult):
        from . import fit_plots
        folder.mkdir(parents=True, exist_ok=True)
        files = fit_plots.fit_figures(result, folder)
        if result.profiles:
            files.append(fit_plots.profile_figure(result, folder / "profile_likelihood.png"))
        return files
    if isinstance(result, PopulationResult):
        from . import population_plots
        folder.mkdir(parents=True, exist_ok=True)
        return population_plots.population_figures(result, folder)
    if isinstance(result, VpcResult):
        from .vpc_plots import vpc_figure
        folder.mkdir(parents=True, exist_ok=True)
        return [vpc_figure(result, folder / ("pcvpc.png" if result.prediction_corrected else "vpc.png"))]
    if isinstance(result, Comparison):
        from . import plots
        folder.mkdir(parents=True, exist_ok=True)
        return plots.comparison_figures(result, folder)
    raise CartkinError(f"cannot plot a {type(result).__name__}: not a cartkin result")


__all__ = ["write", "plot"]
