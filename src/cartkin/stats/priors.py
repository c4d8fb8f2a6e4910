"""Log-normal priors on estimated parameters, for maximum a posteriori (MAP) individual fits.

A prior says log θ ~ Normal(log median, SD²). Individual fits then minimise the −log posterior

    −log L(θ) + Σ_j (log θ_j − log median_j)² / (2 SD_j²)        (+ a constant, dropped)

over log θ, with the gradient (log θ_j − log median_j) / SD_j² added to that of −log L.

Priors come as a mapping {name: (median, SD of the log)} (or `LogNormalPrior`s), as CLI text
"rho=1.0:0.5,kappa=2:1" (`parse_prior_text`), or from a population fit (folder or `LoadedFit`): its typical
values are the medians and sqrt(ω²) (the diagonal of Ω) the SDs (`estimation.population.fit_file.priors_from_fit`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import CartkinError


@dataclass(frozen=True)
class LogNormalPrior:
    """log θ ~ Normal(log median, sd²)."""
    median: float
    sd: float

    def describe(self, name: str) -> str:
        return f"{name} ~ logN({self.median:.4g}, {self.sd:.3g})"


def parse_prior_text(items: Sequence[str]) -> dict[str, LogNormalPrior]:
    """`["rho=1.0:0.5", "kappa=2:1,k_exh=0.1:1"]` -> priors; a name given twice is refused."""
    out: dict[str, LogNormalPrior] = {}
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                continue
            name, eq, rest = part.partition("=")
            median, colon, sd = rest.partition(":")
            name = name.strip()
            try:
                if not (eq and colon and name):
                    raise ValueError
                prior = LogNormalPrior(float(median), float(sd))
            except ValueError:
                raise CartkinError(f"--prior {part!r}: expected NAME=MEDIAN:SD (SD of the log), e.g. rho=1.0:0.5, "
                                   f"or a population fit folder") from None
            if name in out:
                raise CartkinError(f"--prior: {name} is given twice")
            out[name] = prior
    return out


def as_priors(priors, model, free: Sequence[str]) -> dict[str, LogNormalPrior]:
    """Checked priors for the estimated parameters `free` of `model` (empty when `priors` is None).

    priors: {name: (median, sd) or LogNormalPrior} (a population fit's priors come from
    `cartkin.estimation.population.fit_file.priors_from_fit`)."""
    if priors is None:
        return {}
    if not isinstance(priors, Mapping):
        raise CartkinError(f"priors must be a mapping name -> (median, SD of the log), a population fit folder "
                           f"or a LoadedFit, not {type(priors).__name__}")
    out = {}
    for name, value in priors.items():
        if name not in free:
            raise CartkinError(f"prior on {name}, which is not estimated (estimated: {', '.join(free)})")
        try:
            prior = value if isinstance(value, LogNormalPrior) else LogNormalPrior(*(float(v) for v in value))
        except (TypeError, ValueError):
            raise CartkinError(f"prior on {name}: expected (median, SD of the log), got {value!r}") from None
        if not (math.isfinite(prior.sd) and prior.sd > 0):
            raise CartkinError(f"prior on {name}: SD of the log must be > 0, got {prior.sd:g}")
        info = model.parameter(name)
        if not (math.isfinite(prior.median) and prior.median > 0 and info.lower <= prior.median <= info.upper):
            raise CartkinError(f"prior on {name}: median {prior.median:g} is outside the bounds of {name} "
                               f"({max(info.lower, 0):g}, {info.upper:g}]")
        out[name] = prior
    return out
