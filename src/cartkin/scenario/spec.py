"""Scenario files: a model, a virtual population, treatment arms and the outcomes to report.

A scenario is plain data (frozen dataclasses). `Scenario.from_toml` reads a TOML file with the standard
library's `tomllib` and checks every key, so a bad file fails with one line naming the key, e.g.
``arms[2].regimen.dose_per_kg: must be >= 0, got -1``. The layout is documented in README.md and shown
in full by the built-in default scenario (`cartkin/scenario/builtin/meta10-19.toml`).

Built-in scenarios are the TOML files in `cartkin/scenario/builtin/`, found by name: `Scenario.builtin(name)`,
`load_scenario(name or path)`, `builtin_scenarios()` (name and one-line description each).
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..dosing import Infusion, Regimen
from ..errors import CartkinError
from ..solve.solver import Solver
from ..estimation.population.fit_file import load_fit
from ..model.definition import Model, unknown_name_message
from ..model.registry import load_model
from ..population import covariates as cov
from ..population.population import dose_uniforms
from ..population.variability import MAX_CV
from ..stats.covariates import CovariateEffect
from . import outcomes as registry
from .outcomes import Outcomes


@dataclass(frozen=True)
class Arm:
    """A treatment arm: a name, parameter overrides (typical values) and a regimen.

    dose: None (every patient gets `regimen`), or a distribution (cartkin.population covariates) of each
    patient's dose per kg; `regimen` then holds the distribution's median and patient i's infusions are
    scaled by dose_i / median (`dose_scale`)."""
    name: str
    regimen: Regimen
    parameters: Mapping[str, float] = field(default_factory=dict)
    dose: Any = None

    @property
    def nominal_dose(self) -> float:
        """The per-kg dose the regimen holds (for a dose distribution, its median)."""
        return self.regimen.total_per_kg

    def dose_scale(self, seed: int, subjects) -> np.ndarray | None:
        """Per-patient factors on the regimen's infusions (None without a dose distribution)."""
        if self.dose is None:
            return None
        return self.dose.sample(dose_uniforms(seed, subjects)) / self.nominal_dose

    def describe(self) -> str:
        if self.dose is None:
            return self.regimen.describe()
        lo, hi = self.dose.support()
        return (f"{self.regimen.describe()} (median; per patient {type(self.dose).__name__.lower()} "
                f"{lo:.3g} to {hi:.3g} cells/kg)")


@dataclass(frozen=True)
class Observed:
    """An observed trial result to compare replicates with: `count` patients with `outcome`, and whether a
    replicate is at least as good as it with at least (`at_least`) or at most (`at_most`) that count."""
    outcome: str
    count: int
    direction: str  # "at_least" | "at_most"

    def met(self, counts: np.ndarray) -> np.ndarray:
        """Replicates whose count is at least as good as the observed one."""
        counts = np.asarray(counts)
        return counts >= self.count if self.direction == "at_least" else counts <= self.count

    def describe(self, size: int) -> str:
        sign = "≥" if self.direction == "at_least" else "≤"
        return f"{self.outcome} {sign} {self.count}/{size}"


@dataclass(frozen=True)
class TrialSpec:
    """[trial]: `replicates` trials of `size` patients per arm, each drawn afresh from the population
    (and, with [population.uncertainty], with the population parameters of draw r mod n_draws)."""
    size: int
    replicates: int
    observed: tuple[Observed, ...] = ()


@dataclass(frozen=True)
class PopulationSpec:
    """How to draw the virtual patients (shared by all arms, so arms are compared on the same people)."""
    n: int = 1000
    seed: int = 0
    variability_cv: Mapping[str, float] = field(default_factory=dict)  # CV% of log-normal IIV
    correlation: Mapping[tuple[str, str], float] = field(default_factory=dict)
    covariates: Mapping[str, Any] = field(default_factory=dict)  # name -> distribution object
    typical: Mapping[str, float] = field(default_factory=dict)  # typical values (default: the model's)
    # (parameter, covariate, "power" | "exp", coefficient, reference) from a population fit
    covariate_effects: tuple[tuple[CovariateEffect, float], ...] = ()  # (effect, coefficient β)
    from_fit: str = ""  # the population fit folder these came from
    # calibration uncertainty ([population.uncertainty] draws = "x.csv"): one dict per posterior draw,
    # PARAMETER -> typical value and PARAMETER_cv -> CV%, only for the calibrated quantities
    uncertainty: tuple[Mapping[str, float], ...] = ()
    uncertainty_path: str = ""  # the draws file they were read from


@dataclass(frozen=True)
class Scenario:
    """A regimen comparison: `cartkin.compare(scenario)` runs it."""
    name: str
    model: Model
    arms: tuple[Arm, ...]
    population: PopulationSpec = PopulationSpec()
    horizon: float = 365.0
    outcomes: Outcomes = Outcomes()  # [outcomes.<name>] tables (scenario/outcomes.py); empty: none reported
    solver: Solver = Solver()  # [scenario] method, rtol, atol
    description: str = ""
    provenance: str = ""  # [scenario] provenance: where the values come from (e.g. what they were calibrated to)
    trial: TrialSpec | None = None  # [trial]: replicate trials (scenario/trials.py)

    def times(self) -> np.ndarray:
        """Output grid: every 0.25 d to day 28 (for Cmax/Tmax), then daily to the horizon."""
        early = np.arange(0.0, min(28.0, self.horizon), 0.25)
        late = np.arange(28.0, self.horizon + 1e-9, 1.0)
        grid = np.unique(np.concatenate([early, late, [self.horizon]]))
        return grid[grid <= self.horizon]

    @classmethod
    def from_toml(cls, path: str | Path) -> "Scenario":
        path = Path(path)
        if not path.is_file():
            raise CartkinError(f"scenario file not found: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise CartkinError(f"{path}: not valid TOML ({exc})") from None
        except UnicodeDecodeError:
            raise CartkinError(f"{path}: not a text file") from None
        try:
            return cls.from_dict(data, base=path.parent)
        except CartkinError as exc:
            raise CartkinError(f"{path.name}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: str | Path | None = None) -> "Scenario":
        """base: folder that relative paths (population.from_fit) are resolved against first."""
        return _parse(_Section(data, ""), Path(base) if base is not None else None)

    @classmethod
    def builtin(cls, name: str) -> "Scenario":
        """A built-in scenario by name (`builtin_scenarios()` lists them), e.g. "eliana" or "meta10-19"."""
        text = builtin_text(name)
        try:
            return cls.from_dict(tomllib.loads(text), base=_builtin_folder())
        except CartkinError as exc:
            raise CartkinError(f"built-in scenario {name}: {exc}") from None


#: the built-in scenario `cartkin compare` runs without a scenario argument
DEFAULT_SCENARIO = "meta10-19"


def _builtin_folder() -> Path:
    return Path(str(resources.files("cartkin.scenario").joinpath("builtin")))


def list_scenarios() -> tuple[str, ...]:
    """Names of the built-in scenarios (the TOML files shipped in cartkin/scenario/builtin/)."""
    folder = resources.files("cartkin.scenario").joinpath("builtin")
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")))


def builtin_text(name: str) -> str:
    """The TOML text of a built-in scenario; an unknown name is an error listing the names."""
    if not isinstance(name, str) or name not in list_scenarios():
        raise CartkinError(f"no built-in scenario {name!r} (built-in: {', '.join(list_scenarios())})")
    return resources.files("cartkin.scenario").joinpath("builtin", f"{name}.toml").read_text(encoding="utf-8")


def builtin_scenarios() -> list[tuple[str, str]]:
    """(name, one-line description) of each built-in scenario, from its [scenario] description."""
    out = []
    for name in list_scenarios():
        head = tomllib.loads(builtin_text(name)).get("scenario", {})
        out.append((name, str(head.get("description", head.get("name", "")))))
    return out


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario file (a path that exists) or else a built-in scenario by name; anything else is one error
    naming both possibilities."""
    path = Path(name_or_path)
    if path.is_file():
        return Scenario.from_toml(path)
    text = str(name_or_path)
    if text in list_scenarios():
        return Scenario.builtin(text)
    names = ", ".join(list_scenarios())
    if path.suffix or len(path.parts) > 1:  # meant as a file
        raise CartkinError(f"scenario file not found: {text} (built-in scenarios, by name: {names})")
    raise CartkinError(f"{text!r} is neither a scenario file nor a built-in scenario (built-in: {names}; "
                       f"`cartkin scenario --list` describes them)")


def default_scenario() -> Scenario:
    """The META 10-19 question: IL-10 CAR T at 0.1/0.2e6 per kg vs conventional at 0.1/0.2/1e6 per kg."""
    return Scenario.builtin(DEFAULT_SCENARIO)


# ---- parsing with key paths in every error ------------------------------------------------------------

class _Section:
    """A TOML table with its dotted path, whose getters check types and report unknown keys."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, Mapping):
            raise CartkinError(f"{path or 'the file'}: must be a table, got {type(data).__name__}")
        self.data = dict(data)
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, kind, default=..., check=None):
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise CartkinError(f"{self.key(name)}: missing (required)")
            return default
        return _typed(self.data[name], kind, self.key(name), check)

    def section(self, name: str, required: bool = False) -> "_Section":
        self.used.add(name)
        if name not in self.data:
            if required:
                raise CartkinError(f"{self.key(name)}: missing (required)")
            return _Section({}, self.key(name))
        return _Section(self.data[name], self.key(name))

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise CartkinError(f"{self.key(extra[0])}: unknown key")


def _typed(value, kind, key, check=None):
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CartkinError(f"{key}: must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise CartkinError(f"{key}: must be finite, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CartkinError(f"{key}: must be an integer, got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise CartkinError(f"{key}: must be a string, got {value!r}")
    elif kind is bool:
        if not isinstance(value, bool):
            raise CartkinError(f"{key}: must be true or false, got {value!r}")
    elif kind is list:
        if not isinstance(value, list):
            raise CartkinError(f"{key}: must be a list, got {value!r}")
    if check is not None:
        message = check(value)
        if message:
            raise CartkinError(f"{key}: {message}, got {value!r}")
    return value


def _positive(v):
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _parse(root: _Section, base: Path | None = None) -> Scenario:
    head = root.section("scenario", required=True)
    name = head.get("name", str, "scenario")
    description = head.get("description", str, "")
    provenance = head.get("provenance", str, "")
    model_name = head.get("model", str)
    try:
        model = load_model(model_name)
    except CartkinError as exc:
        raise CartkinError(f"scenario.model: {exc}") from None
    horizon = head.get("horizon_days", float, 365.0, _positive)
    try:
        solver = Solver(head.get("method", str, "auto"), head.get("rtol", float, 1e-6, _positive),
                        head.get("atol", float, 1e-9, _positive))
    except CartkinError as exc:
        raise CartkinError(f"scenario: {exc}") from None
    head.finish()

    population = _parse_population(root.section("population"), model, base)
    outcomes = _parse_outcomes(root.section("outcomes"), model, horizon)

    root.used.add("arms")
    raw_arms = root.data.get("arms")
    if raw_arms is None:
        raise CartkinError("arms: missing (required): add [[arms]] tables")
    if not isinstance(raw_arms, list) or not raw_arms:
        raise CartkinError("arms: must be a non-empty list of [[arms]] tables")
    arms = tuple(_parse_arm(_Section(a, f"arms[{i + 1}]"), model, base) for i, a in enumerate(raw_arms))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise CartkinError(f"arms: arm names must be unique (got {names})")
    for i, arm in enumerate(arms):
        late = [d.time for d in arm.regimen if d.time >= horizon]
        if late:
            raise CartkinError(f"arms[{i + 1}]: an infusion on day {late[0]:g} is at or after the horizon "
                               f"({horizon:g} d) and has no effect; drop it or lengthen scenario.horizon_days")
    scenario = Scenario(name=name, model=model, arms=arms, population=population, horizon=horizon,
                        outcomes=outcomes, solver=solver, description=description, provenance=provenance)
    if root.has("trial"):
        scenario = dataclasses.replace(scenario, trial=_parse_trial(root.section("trial"), scenario))
    root.finish()
    return scenario


#: largest trial size: patient j of replicate r is subject r * TRIAL_STRIDE + j of the population's streams
TRIAL_STRIDE = 2 ** 24


def _parse_trial(sec: _Section, scenario: Scenario) -> TrialSpec:
    """[trial] size, replicates and [trial.observed] OUTCOME = { at_least = k } or { at_most = k }."""
    size = sec.get("size", int, check=lambda v: None if 1 <= v < TRIAL_STRIDE else
                   f"must be a whole number of patients from 1 to {TRIAL_STRIDE - 1}")
    replicates = sec.get("replicates", int, check=lambda v: None if 1 <= v <= 2 ** 39 else
                         "must be a whole number of trials >= 1")
    counted = scenario.outcomes.counted(scenario)
    obs_sec = sec.section("observed")
    observed = []
    for outcome in obs_sec.data:
        key = obs_sec.key(outcome)
        if outcome not in counted:
            raise CartkinError(f"{key}: unknown outcome '{outcome}'; the scenario's outcomes counted per trial "
                               f"are {', '.join(counted) or 'none'}")
        if not isinstance(obs_sec.data[outcome], Mapping):
            raise CartkinError(f"{key}: give the count with its direction, {{ at_least = N }} or {{ at_most = N }} "
                               f"(e.g. {outcome} = {{ at_least = {size} }}), got {obs_sec.data[outcome]!r}")
        item = obs_sec.section(outcome)
        given = [d for d in ("at_least", "at_most") if item.has(d)]
        if len(given) != 1:
            raise CartkinError(f"{key}: give one of at_least or at_most, e.g. {outcome} = {{ at_least = {size} }}")
        count = item.get(given[0], int, check=lambda v: None if 0 <= v <= size else
                         f"must be a count of patients from 0 to the trial size ({size})")
        item.finish()
        observed.append(Observed(outcome, count, given[0]))
    obs_sec.finish()
    sec.finish()
    return TrialSpec(size=size, replicates=replicates, observed=tuple(observed))


def _check_parameter(model: Model, name: str, key: str) -> None:
    if name not in model.parameter_names:
        raise CartkinError(f"{key}: {unknown_name_message('parameter', name, model.parameter_names, model.name)}")


def _parse_population(sec: _Section, model: Model, base: Path | None = None) -> PopulationSpec:
    n = sec.get("n", int, 1000, _positive)
    seed = sec.get("seed", int, 0, _non_negative)
    from_fit = sec.get("from_fit", str, "")
    fitted = _population_from_fit(from_fit, base, model, sec.key("from_fit")) if from_fit else {}
    cv_sec = sec.section("variability")
    cv = {}
    for pname in cv_sec.data:
        _check_parameter(model, pname, cv_sec.key(pname))
        cv[pname] = cv_sec.get(pname, float, check=lambda v: None if 0 <= v <= MAX_CV else
                               f"must be between 0 and {MAX_CV:.3g} (CV%; beyond it parameters overflow to inf)")
    cv_sec.finish()
    omega_sec = sec.section("omega")  # the same variability as ω² (variance of the log): CV = sqrt(e^ω² − 1)
    for pname in omega_sec.data:
        _check_parameter(model, pname, omega_sec.key(pname))
        if pname in cv:
            raise CartkinError(f"{omega_sec.key(pname)}: {pname} also has a CV% in [population.variability]; "
                               f"keep one")
        omega2 = omega_sec.get(pname, float, check=lambda v: None if 0 <= v <= 100 else "must be between 0 and 100")
        cv[pname] = 100.0 * math.sqrt(math.expm1(omega2))
    omega_sec.finish()
    corr_sec = sec.section("correlation")
    correlation = {}
    for pair in corr_sec.data:
        parts = pair.split("-")
        if len(parts) != 2:
            raise CartkinError(f"{corr_sec.key(pair)}: name a pair as \"a-b\" (e.g. \"rho-kappa\")")
        for pname in parts:
            _check_parameter(model, pname, corr_sec.key(pair))
            if pname not in cv and pname not in fitted.get("cv", {}):
                raise CartkinError(f"{corr_sec.key(pair)}: {pname} has no variability to correlate")
        correlation[(parts[0], parts[1])] = corr_sec.get(
            pair, float, check=lambda v: None if -1 < v < 1 else "must be between -1 and 1")
    corr_sec.finish()
    cov_sec = sec.section("covariates")
    covariates = {}
    for pname in cov_sec.data:
        key = cov_sec.key(pname)
        _check_parameter(model, pname, key)
        covariates[pname] = _parse_distribution(_Section(cov_sec.data[pname], key), cov, base)
        cov_sec.used.add(pname)
        if pname in cv:
            raise CartkinError(f"{key}: {pname} has both variability and a covariate distribution; keep one")
    cov_sec.finish()
    typical_sec = sec.section("typical")  # typical values overriding the model's defaults (and a fit's)
    typical = {}
    for pname in typical_sec.data:
        _check_parameter(model, pname, typical_sec.key(pname))
        info = model.parameter(pname)
        typical[pname] = typical_sec.get(pname, float, check=lambda v, i=info: None if i.lower <= v <= i.upper
                                         else f"must be within the parameter's bounds [{i.lower:g}, {i.upper:g}]")
    typical_sec.finish()
    uncertainty_sec = sec.section("uncertainty")
    uncertainty: tuple = ()
    uncertainty_path = ""
    if uncertainty_sec.data:
        uncertainty_path = str(_resolve(uncertainty_sec.get("draws", str), base))
        uncertainty = read_draws(uncertainty_path, model, uncertainty_sec.key("draws"))
    uncertainty_sec.finish()
    table_sec = sec.section("covariate_table")  # whole rows of real patients: covariates drawn jointly
    if table_sec.data:
        columns = table_sec.get("columns", dict)
        if not isinstance(columns, Mapping) or not columns:
            raise CartkinError(f"{table_sec.key('columns')}: must be a table {{PARAMETER = \"CSV column\"}}, "
                               f"e.g. columns = {{WT = \"weight\"}}, got {columns!r}")
        for pname, column in columns.items():
            key = f"{table_sec.key('columns')}.{pname}"
            _check_parameter(model, pname, key)
            _typed(column, str, key)
            if pname in covariates or pname in cv or pname in fitted.get("cv", {}):
                raise CartkinError(f"{key}: {pname} already has a distribution or variability; keep one")
        table = cov.EmpiricalTable.from_csv(_resolve(table_sec.get("path", str), base), columns)
        covariates.update({pname: table for pname in columns})
    table_sec.finish()
    sec.finish()
    if fitted:
        # the file's own [population.variability] and [population.correlation] entries win over the fit's
        own = set(cv)
        cv = {**{k: v for k, v in fitted["cv"].items() if k not in own}, **cv}
        pairs = {frozenset(p) for p in correlation}
        correlation = {**{p: r for p, r in fitted["correlation"].items()
                          if not (set(p) & own) and frozenset(p) not in pairs}, **correlation}
        for pname in covariates:
            if pname in cv:
                raise CartkinError(f"{sec.key('covariates')}.{pname}: {pname} has variability from the fit "
                                   f"({from_fit}); it cannot also have a covariate distribution")
    if correlation:
        from ..population.variability import Variability
        try:  # correlations that cannot hold together: found here, with the key path
            Variability(cv=cv, correlation=correlation)
        except CartkinError as exc:
            raise CartkinError(f"{corr_sec.path}: {exc}") from None
    for name in (k for d in uncertainty[:1] for k in d):
        pname = name[:-3] if name.endswith("_cv") else name
        if name.endswith("_cv") and pname not in cv:
            raise CartkinError(f"{uncertainty_sec.key('draws')}: column {name}: {pname} has no variability in "
                               f"[population.variability]")
    return PopulationSpec(n=n, seed=seed, variability_cv=cv, correlation=correlation, covariates=covariates,
                          typical={**fitted.get("typical", {}), **typical},
                          covariate_effects=fitted.get("effects", ()), from_fit=fitted.get("folder", ""),
                          uncertainty=uncertainty, uncertainty_path=uncertainty_path)


def read_draws(path: str | Path, model: Model, key: str = "draws") -> tuple[dict[str, float], ...]:
    """Posterior draws of a calibration (calibrated_draws.csv): one dict per row, columns PARAMETER (typical
    value, within its bounds) and PARAMETER_cv (CV% of its variability, 0 to MAX_CV)."""
    import csv
    path = Path(path)
    if not path.is_file():
        raise CartkinError(f"{key}: file not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2 or not rows[0]:
        raise CartkinError(f"{key}: {path.name} has no draws (a header row and one row per draw expected)")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise CartkinError(f"{key}: {path.name}: a column appears twice in {header}")
    for name in header:
        pname = name[:-3] if name.endswith("_cv") else name
        if pname not in model.parameter_names:
            raise CartkinError(f"{key}: {path.name}: column {name!r}: "
                               + unknown_name_message("parameter", pname, model.parameter_names, model.name))
    draws = []
    for r, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise CartkinError(f"{key}: {path.name} line {r}: {len(row)} values for {len(header)} columns")
        draw = {}
        for name, text in zip(header, row):
            try:
                value = float(text)
            except ValueError:
                raise CartkinError(f"{key}: {path.name} line {r}, column {name}: not a number: {text!r}") from None
            if name.endswith("_cv"):
                ok = math.isfinite(value) and 0 <= value <= MAX_CV
            else:
                info = model.parameter(name)
                ok = math.isfinite(value) and info.lower <= value <= info.upper
            if not ok:
                raise CartkinError(f"{key}: {path.name} line {r}, column {name}: {value!r} is outside its "
                                   f"allowed range")
            draw[name] = value
        draws.append(draw)
    return tuple(draws)


def _population_from_fit(text: str, base: Path | None, model: Model, key: str) -> dict:
    """Typical values, CV% and correlations (from Ω) and covariate effects of a population fit folder."""
    folder = Path(text)
    if not folder.is_absolute() and base is not None and (base / folder).is_dir():
        folder = base / folder
    try:
        fit = load_fit(folder, with_data=False)
    except CartkinError as exc:
        raise CartkinError(f"{key}: {exc}") from None
    if fit.model_name != model.name:
        raise CartkinError(f"{key}: the fit in {folder} is of model {fit.model_name}, the scenario's model is "
                           f"{model.name}")
    omega = fit.omega
    names = fit.parameters
    cv = {p: 100.0 * math.sqrt(math.expm1(float(omega[j, j]))) for j, p in enumerate(names)}
    correlation = {}
    for a in range(len(names)):
        for b in range(a):
            r = float(omega[a, b] / math.sqrt(omega[a, a] * omega[b, b]))
            if r != 0.0:
                correlation[(names[b], names[a])] = r
    coefficients = fit.coefficients
    effects = tuple((e, coefficients[e.name]) for e in fit.effects)
    return {"cv": cv, "correlation": correlation, "typical": {**fit.fixed, **fit.typical}, "effects": effects,
            "folder": str(folder)}


def _resolve(path: str, base: Path | None) -> Path:
    """A relative path is looked up next to the scenario file first, then in the working folder, then
    among the built-in scenarios' files (so a copy of a built-in, `cartkin scenario meta10-19 > my.toml`,
    still finds its calibration draws)."""
    p = Path(path)
    if p.is_absolute():
        return p
    if base is not None and (base / p).exists():
        return base / p
    if not p.exists() and (_builtin_folder() / p).is_file():
        return _builtin_folder() / p
    return p


def _parse_distribution(sec: _Section, cov, base: Path | None = None):
    kinds = ("lognormal", "normal", "uniform", "fixed", "csv")
    kind = sec.get("distribution", str, check=lambda v: None if v in kinds else f"must be one of {', '.join(kinds)}")
    if kind == "lognormal":
        dist = cov.LogNormal(sec.get("median", float, check=_positive), sec.get("cv", float, check=_non_negative),
                             lower=sec.get("lower", float, None, _positive), upper=sec.get("upper", float, None, _positive))
    elif kind == "normal":
        dist = cov.Normal(sec.get("mean", float), sec.get("sd", float, check=_non_negative),
                          lower=sec.get("lower", float, None), upper=sec.get("upper", float, None))
    elif kind == "uniform":
        dist = cov.Uniform(sec.get("low", float), sec.get("high", float))
    elif kind == "fixed":
        dist = cov.Fixed(sec.get("value", float))
    else:
        dist = cov.Empirical.from_csv(_resolve(sec.get("path", str), base), sec.get("column", str))
    sec.finish()
    return dist


def _parse_outcomes(sec: _Section, model: Model, horizon: float) -> Outcomes:
    """[outcomes.<name>] tables select registered outcomes (see scenario/outcomes.py). A file without such
    tables uses the older flat keys (exposure, limit, blast, response_day, ...): the built-in scenario's
    outcomes that the model supports, with those keys as their settings."""
    tables = [k for k, v in sec.data.items() if isinstance(v, Mapping)]
    if not tables:
        return _legacy_outcomes(sec, model, horizon)
    for key in sec.data:
        if key not in tables:
            owner = next((o.name for o in registry.REGISTRY.values() if key in o.legacy), "")
            raise CartkinError(f"{sec.key(key)}: with outcome tables, give it as "
                               + (f"{registry.REGISTRY[owner].legacy[key]} in [outcomes.{owner}]" if owner
                                  else "a table [outcomes.<name>]"))
    entries = []
    for name in tables:
        sec.used.add(name)
        path = sec.key(name)
        if name not in registry.REGISTRY:
            raise CartkinError(f"{path}: unknown outcome '{name}' (known: {', '.join(registry.REGISTRY)})")
        raw = sec.data[name]
        entries.append((name, _outcome_settings(registry.REGISTRY[name], raw, lambda f, p=path: f"{p}.{f}",
                                                set(raw), model, horizon, path)))
    sec.finish()
    return Outcomes(tuple(entries))


def _legacy_outcomes(sec: _Section, model: Model, horizon: float) -> Outcomes:
    text = builtin_text(DEFAULT_SCENARIO)
    defaults = tomllib.loads(text)["outcomes"]
    entries = []
    for name, table in defaults.items():
        outcome = registry.REGISTRY[name]
        raw, keys = dict(table), {}
        for flat, setting_name in outcome.legacy.items():
            if sec.has(flat):
                raw[setting_name] = sec.data[flat]
                keys[setting_name] = sec.key(flat)
                sec.used.add(flat)
        if raw.get("observable", None) == "":  # e.g. blast = "": no response outcome
            continue
        settings = _outcome_settings(outcome, raw, lambda f, k=keys, n=name: k.get(f, f"outcomes.{n}.{f}"),
                                     set(keys), model, horizon, sec.key(name), lenient=True)
        if settings is not None:
            entries.append((name, settings))
    sec.finish()
    if not entries:
        raise CartkinError(f"outcomes: the model {model.name} has none of the built-in scenario's outcome "
                           f"observables; list outcomes as tables, e.g. [outcomes.exposure] observable = \"...\"")
    return Outcomes(tuple(entries))


_CHECKS = {"": None, "positive": _positive, "non_negative": _non_negative,
           "percent": lambda v: None if 0 < v <= 100 else "a percentage must be > 0 and <= 100",
           "fraction": lambda v: None if 0 < v <= 1 else "a fraction must be > 0 and <= 1"}


def _outcome_settings(outcome, raw: Mapping, key, explicit: set, model: Model, horizon: float, path: str,
                      lenient: bool = False):
    """The outcome's settings dataclass from its table `raw`; key(field) is the key path for errors.
    lenient: a name the model lacks in a setting not in `explicit` drops it (None: the whole outcome)."""
    hints = typing.get_type_hints(outcome.settings)
    fields = {f.name: f for f in dataclasses.fields(outcome.settings)}
    for name in raw:
        if name not in fields:
            raise CartkinError(f"{key(name)}: unknown key")
    values = {}
    for name, f in fields.items():
        meta, kind = f.metadata, hints[name]
        given = name in raw
        if given:
            value = _setting_value(raw[name], kind, key(name), _CHECKS[meta.get("check", "")])
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise CartkinError(f"{key(name)}: missing (required)")
        if meta.get("day"):
            value = _within_horizon(value, key(name), horizon, strict=given and (name in explicit or not lenient))
        refers = meta.get("refers_to")
        if refers:
            names = [value] if isinstance(value, str) else list(value)
            missing = [n for n in names if not _model_has(model, refers, n)]
            if missing and (name in explicit or not lenient):
                known = model.parameter_names if refers == "parameter" else (
                    (*model.observables, *model.state_names) if "state" in refers else model.observables)
                raise CartkinError(f"{key(name)}: " + unknown_name_message(refers, missing[0], known, model.name))
            if missing:
                if isinstance(value, str):
                    return None
                value = (tuple(n for n in value if n not in missing) if isinstance(value, tuple)
                         else {k: v for k, v in value.items() if k not in missing})
                if not value and name in raw and not isinstance(value, dict):
                    return None
        values[name] = value
    try:
        return outcome.settings(**values)
    except CartkinError as exc:
        raise CartkinError(f"{path}.{exc}") from None


def _model_has(model: Model, refers: str, name: str) -> bool:
    if refers == "parameter":
        return name in model.parameter_names
    return name in model.observables or ("state" in refers and name in model.state_names)


def _setting_value(value, kind, key: str, check):
    """A TOML value as a setting of type str, float, tuple[str | float, ...] or Mapping[str, str]."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        _typed(value, list, key)
        return tuple(_typed(v, item, f"{key}[{i}]", check) for i, v in enumerate(value))
    if origin is not None:  # a table of strings
        if not isinstance(value, Mapping):
            raise CartkinError(f"{key}: must be a table, got {value!r}")
        return {k: _typed(v, str, f"{key}.{k}") for k, v in value.items()}
    return _typed(value, kind, key, check)


def _within_horizon(value, key: str, horizon: float, strict: bool):
    """A day (or days) within the horizon: beyond it an error when given, clipped (dropped) when defaulted."""
    if isinstance(value, tuple):
        for i, d in enumerate(value):
            if d > horizon and strict:
                raise CartkinError(f"{key}[{i}]: day {d:g} is beyond the horizon ({horizon:g} d)")
        return tuple(float(d) for d in value if d <= horizon)
    if value > horizon and strict:
        raise CartkinError(f"{key}: day {value:g} is beyond the horizon ({horizon:g} d)")
    return min(value, horizon)


def _parse_arm(sec: _Section, model: Model, base: Path | None = None) -> Arm:
    name = sec.get("name", str)
    par_sec = sec.section("parameters")
    params = {}
    for pname in par_sec.data:
        key = par_sec.key(pname)
        _check_parameter(model, pname, key)
        value = par_sec.get(pname, float)
        info = model.parameter(pname)
        if not info.lower <= value <= info.upper:
            raise CartkinError(f"{key}: {value:g} is outside the bounds of {pname} [{info.lower:g}, {info.upper:g}]")
        params[pname] = value
    par_sec.finish()
    regimen, dose = _parse_regimen(sec, model, base)
    sec.finish()
    return Arm(name=name, regimen=regimen, parameters=params, dose=dose)


def _dose_distribution(sec: _Section, name: str, base: Path | None):
    """A per-patient dose per kg, `{ distribution = "lognormal", median = 3.1e6, cv = 50, lower = 0.2e6,
    upper = 5.4e6 }` (any covariate distribution): (its median, the distribution)."""
    key = sec.key(name)
    sec.used.add(name)
    dist = _parse_distribution(_Section(sec.data[name], key), cov, base)
    lo, _ = dist.support()
    if lo < 0:
        raise CartkinError(f"{key}: a dose distribution must not give negative doses (it reaches {lo:g}); "
                           f"truncate it with lower = 0 or use a lognormal")
    median = float(dist.sample(np.array([0.5]))[0])
    if not median > 0:
        raise CartkinError(f"{key}: the median dose must be > 0, got {median:g}")
    return median, dist


def _parse_regimen(arm: _Section, model: Model, base: Path | None = None) -> tuple[Regimen, Any]:
    """`regimen = {dose_per_kg = 1e5}` (one infusion on day 0), a split dose
    `{total_per_kg = 1e6, fractions = [0.1, 0.3, 0.6], days = [0, 1, 2]}`, `{none = true}`, or a list of
    `[[arms.infusions]]` with time and dose_per_kg | cells | amount (+ target). dose_per_kg and
    total_per_kg may be a distribution table (a dose per patient): returns (regimen, that distribution or None)."""
    if arm.has("infusions"):
        if arm.has("regimen"):
            raise CartkinError(f"{arm.key('regimen')}: give either regimen or infusions, not both")
        items = arm.get("infusions", list)
        infusions = []
        for i, raw in enumerate(items):
            sec = _Section(raw, f"{arm.key('infusions')}[{i + 1}]")
            infusions.append(_infusion(sec, sec.get("time", float, 0.0, _non_negative)))
        return Regimen(infusions), None
    sec = arm.section("regimen", required=True)
    if sec.get("none", bool, False):
        sec.finish()
        return Regimen.none(), None
    dose = None
    if sec.has("total_per_kg"):
        if isinstance(sec.data["total_per_kg"], Mapping):
            total, dose = _dose_distribution(sec, "total_per_kg", base)
        else:
            total = sec.get("total_per_kg", float, check=_non_negative)
        fractions = sec.get("fractions", list)
        days = sec.get("days", list)
        for i, v in enumerate(fractions):
            _typed(v, float, f"{sec.key('fractions')}[{i}]", _non_negative)
        for i, v in enumerate(days):
            _typed(v, float, f"{sec.key('days')}[{i}]", _non_negative)
        sec.finish()
        try:
            return Regimen.split(total, [float(f) for f in fractions], [float(d) for d in days]), dose
        except CartkinError as exc:
            raise CartkinError(f"{sec.path}: {exc}") from None
    time = sec.get("time", float, 0.0, _non_negative)
    if isinstance(sec.data.get("dose_per_kg"), Mapping):
        median, dose = _dose_distribution(sec, "dose_per_kg", base)
        if sec.has("cells") or sec.has("amount"):
            raise CartkinError(f"{sec.path}: give exactly one of dose_per_kg, cells or amount")
        sec.finish()
        return Regimen([Infusion(time, dose_per_kg=median)]), dose
    return Regimen([_infusion(sec, time)]), None


def _infusion(sec: _Section, time: float) -> Infusion:
    given = [k for k in ("dose_per_kg", "cells", "amount") if sec.has(k)]
    if len(given) != 1:
        raise CartkinError(f"{sec.path}: give exactly one of dose_per_kg, cells or amount"
                           + (f" (got {', '.join(given)})" if given else ""))
    value = sec.get(given[0], float, check=_non_negative)
    target = sec.get("target", str, None)
    sec.finish()
    return Infusion(time, **{given[0]: value}, target=target)
