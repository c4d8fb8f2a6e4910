"""Targets files: what a calibration starts from, what may move, and the published figures to reach.

A targets file is TOML (layout in README.md, "Calibration"); `Targets.from_toml` checks every key, so a bad
file fails with one line naming the key, e.g. ``targets[3].count: 80 is more than n = 75``.
"""
from __future__ import annotations

import copy
import math
import re
import tomllib
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import CartkinError
from ..model.definition import unknown_name_message
from ..population.variability import MAX_CV
from ..scenario.spec import DEFAULT_SCENARIO, Scenario, builtin_text, list_scenarios

#: statistic = <outcome column>_<kind>[_of_<group>]
KINDS = ("pct", "gmean", "median")
GROUPS = ("responders", "nonresponders")
#: short names accepted in statistics (rfs_365_pct_of_responders = relapse_free_365_pct_of_responders)
ALIASES = {"rfs_": "relapse_free_"}
SHIPPED = ("eliana", "meta10-19")


def cv_to_omega(cv_percent: float) -> float:
    """SD of the log of a log-normal with this CV%."""
    return math.sqrt(math.log1p((cv_percent / 100.0) ** 2))


def omega_to_cv(omega: float) -> float:
    return 100.0 * math.sqrt(math.expm1(omega ** 2))


@dataclass(frozen=True)
class Moving:
    """A calibrated parameter: its typical value and/or CV% may move within bounds, with log-normal priors."""
    name: str
    typical: tuple[float, float] | None = None  # bounds; None: the typical value stays at its start
    typical_prior: tuple[float, float] | None = None  # (median, CV%) of a log-normal prior
    cv: tuple[float, float] | None = None  # CV% bounds; None: the CV stays at its start
    cv_prior: tuple[float, float] | None = None
    proposal_cv: float = 60.0  # CV% of the proposal around the start (at least)
    start_cv: float | None = None  # CV% given here to a parameter without variability in the start scenario


@dataclass(frozen=True)
class Target:
    """One published figure: statistic of a per-patient outcome column over some arms, with its uncertainty."""
    statistic: str
    column: str
    kind: str  # "pct", "gmean" or "median"
    group: str  # "", "responders" or "nonresponders"
    arms: tuple[str, ...]
    n: float
    value: float  # observed: % for pct, the value in the column's unit otherwise
    count: float | None = None  # observed count for pct targets (value = 100 count / n)
    cv: float | None = None  # between-patient CV% of a geometric mean or median (None: the simulated spread)
    source: str = ""
    label: str = ""


@dataclass(frozen=True)
class Profile:
    """A profile of the targets' likelihood over one scale multiplying some parameters' typical values."""
    parameters: tuple[str, ...]
    scales: tuple[float, ...]
    size: int  # patients per arm at each scale


@dataclass(frozen=True)
class Targets:
    name: str
    path: str
    base: Mapping[str, Any] = field(repr=False)  # the starting scenario as TOML data (arms replaced)
    base_folder: str | None
    seed: int
    proposal_size: int
    final_size: int
    rounds: int
    min_ess: float
    draws: int
    moving: tuple[Moving, ...]
    arms: tuple[Mapping[str, Any], ...]  # [[arms]] tables: name, parameters, regimen, covariates
    targets: tuple[Target, ...]
    profile: Profile | None = None

    @classmethod
    def from_toml(cls, path: str | Path, scenario: str | Path | None = None) -> "Targets":
        """path: a targets file or the name of a shipped one (eliana, meta10-19); scenario: a scenario
        file (or "default") replacing the file's [calibration] scenario, e.g. another calibration's
        calibrated.toml."""
        text, where, folder = _read(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CartkinError(f"{where}: not valid TOML ({exc})") from None
        try:
            return _parse(data, where, folder, scenario)
        except CartkinError as exc:
            raise CartkinError(f"{Path(where).name}: {exc}") from None

    # ---- the scenario of a candidate population -----------------------------------------------------
    def scenario_data(self, arms: tuple[int, ...], n: int, seed: int, typical: Mapping[str, float],
                      cv: Mapping[str, float]) -> dict:
        """Scenario TOML data: the start scenario with these arms (the first's covariates), n, seed, typical
        values and CV%s."""
        data = copy.deepcopy(dict(self.base))
        population = data.setdefault("population", {})
        population["n"], population["seed"] = int(n), int(seed)
        population.pop("uncertainty", None)
        population["typical"] = {**population.get("typical", {}), **typical}
        variability = population.setdefault("variability", {})
        omega = population.get("omega", {})
        for name, value in cv.items():
            omega.pop(name, None)
            variability[name] = float(value)
        if not omega:
            population.pop("omega", None)
        covariates = self.arms[arms[0]].get("covariates", {})
        if covariates:
            population["covariates"] = {**population.get("covariates", {}), **copy.deepcopy(dict(covariates))}
        data["arms"] = [{k: copy.deepcopy(v) for k, v in self.arms[k].items() if k != "covariates"} for k in arms]
        return data

    def scenario(self, arms: tuple[int, ...], n: int, seed: int, typical, cv) -> Scenario:
        return Scenario.from_dict(self.scenario_data(arms, n, seed, typical, cv), base=self.base_folder)

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a["name"] for a in self.arms)


def shipped_targets(name: str) -> str:
    """The text of a targets file shipped with cartkin (cartkin/calibration/targets/NAME.toml)."""
    return resources.files("cartkin.calibration").joinpath("targets", f"{name}.toml").read_text(encoding="utf-8")


def _read(path) -> tuple[str, str, str | None]:
    if isinstance(path, str) and path in SHIPPED and not Path(path).is_file():
        return shipped_targets(path), f"{path}.toml", None
    p = Path(path)
    if not p.is_file():
        raise CartkinError(f"targets file not found: {p} (shipped targets: {', '.join(SHIPPED)})")
    try:
        return p.read_text(encoding="utf-8"), str(p), str(p.parent)
    except UnicodeDecodeError:
        raise CartkinError(f"{p}: not a text file") from None


def _builtin_scenario_data(name: str) -> dict:
    """A built-in scenario's TOML as a dict ("default": the default built-in, meta10-19)."""
    return tomllib.loads(builtin_text(DEFAULT_SCENARIO if name == "default" else name))


def _number(value, key: str, positive: bool = False, non_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CartkinError(f"{key}: must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise CartkinError(f"{key}: must be > 0, got {value!r}")
    if non_negative and value < 0:
        raise CartkinError(f"{key}: must be >= 0, got {value!r}")
    return float(value)


def _integer(value, key: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise CartkinError(f"{key}: must be an integer >= {low}, got {value!r}")
    return value


def _table(value, key: str) -> dict:
    if not isinstance(value, Mapping):
        raise CartkinError(f"{key}: must be a table, got {value!r}")
    return dict(value)


def _unknown(table: Mapping, allowed, key: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise CartkinError(f"{key}.{extra[0]}: unknown key (known: {', '.join(allowed)})")


def _pair(value, key: str, positive: bool = True) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise CartkinError(f"{key}: must be [low, high], got {value!r}")
    low, high = (_number(v, f"{key}[{i}]", positive=positive) for i, v in enumerate(value))
    if not low < high:
        raise CartkinError(f"{key}: low must be below high, got {value!r}")
    return low, high


def _prior(value, key: str) -> tuple[float, float]:
    table = _table(value, key)
    _unknown(table, ("median", "cv"), key)
    if "median" not in table or "cv" not in table:
        raise CartkinError(f"{key}: give median and cv (CV% of a log-normal prior)")
    return _number(table["median"], f"{key}.median", positive=True), _number(table["cv"], f"{key}.cv", positive=True)


def _parse(data: Mapping, where: str, folder: str | None, scenario_override) -> Targets:
    _unknown(data, ("calibration", "outcomes", "arms", "targets"), "the file")
    head = _table(data.get("calibration", None) or {}, "calibration")
    if "calibration" not in data:
        raise CartkinError("calibration: missing (required): add a [calibration] table")
    allowed = ("name", "scenario", "seed", "proposal_size", "final_size", "rounds", "min_ess", "draws",
               "horizon_days", "parameters", "profile")
    _unknown(head, allowed, "calibration")
    name = head.get("name", Path(where).stem)
    if not isinstance(name, str):
        raise CartkinError(f"calibration.name: must be a string, got {name!r}")
    source = scenario_override if scenario_override is not None else head.get("scenario", "default")
    base, base_folder = _base_scenario(source, folder)
    if "horizon_days" in head:
        base.setdefault("scenario", {})["horizon_days"] = _number(head["horizon_days"], "calibration.horizon_days",
                                                                  positive=True)
    if "outcomes" in data:  # the targets file's outcome tables replace the scenario's
        base["outcomes"] = copy.deepcopy(_table(data["outcomes"], "outcomes"))
    raw_arms = data.get("arms")
    if not isinstance(raw_arms, list) or not raw_arms:
        raise CartkinError("arms: missing (required): add [[arms]] tables (name, parameters, regimen, covariates)")
    arms = []
    for i, arm in enumerate(raw_arms):
        arm = _table(arm, f"arms[{i + 1}]")
        _unknown(arm, ("name", "parameters", "regimen", "covariates"), f"arms[{i + 1}]")
        arms.append(arm)
    names = [a.get("name") for a in arms]
    if len(set(map(str, names))) != len(names):
        raise CartkinError(f"arms: arm names must be unique (got {names})")
    # the start scenario with every arm: checks arms, covariates and outcomes with the scenario parser's key paths
    probe = copy.deepcopy(base)
    population = probe.setdefault("population", {})
    for i, arm in enumerate(arms):
        probe["arms"] = [{k: v for k, v in arm.items() if k != "covariates"}]
        if "covariates" in arm:
            population["covariates"] = {**base.get("population", {}).get("covariates", {}),
                                        **_table(arm["covariates"], f"arms[{i + 1}].covariates")}
        try:
            start = Scenario.from_dict(probe, base=base_folder)
        except CartkinError as exc:
            raise CartkinError(f"arms[{i + 1}] on the start scenario: {exc}") from None
    model = start.model
    seed = _integer(head.get("seed", 1), "calibration.seed", low=0)
    proposal_size = _integer(head.get("proposal_size", 2000), "calibration.proposal_size", low=10)
    final_size = _integer(head.get("final_size", 1000), "calibration.final_size", low=10)
    rounds = _integer(head.get("rounds", 2), "calibration.rounds")
    min_ess = _number(head.get("min_ess", 100), "calibration.min_ess", positive=True)
    draws = _integer(head.get("draws", 200), "calibration.draws", low=2)

    moving = []
    parameters = _table(head.get("parameters", {}), "calibration.parameters")
    spec = start.population
    for pname, raw in parameters.items():
        key = f"calibration.parameters.{pname}"
        if pname not in model.parameter_names:
            raise CartkinError(f"{key}: {unknown_name_message('parameter', pname, model.parameter_names, model.name)}")
        raw = _table(raw, key)
        _unknown(raw, ("typical", "typical_prior", "cv", "cv_prior", "proposal_cv", "start_cv"), key)
        typical = _pair(raw["typical"], f"{key}.typical") if "typical" in raw else None
        cv = _pair(raw["cv"], f"{key}.cv") if "cv" in raw else None
        if cv is not None and cv[1] > MAX_CV:
            raise CartkinError(f"{key}.cv: at most {MAX_CV:.3g} %")
        if typical is None and cv is None:
            raise CartkinError(f"{key}: give typical = [low, high] and/or cv = [low, high] (what may move)")
        if pname in spec.covariates:
            raise CartkinError(f"{key}: {pname} is a covariate (drawn per arm), not a calibrated parameter")
        start_cv = _number(raw["start_cv"], f"{key}.start_cv", positive=True) if "start_cv" in raw else None
        if start_cv is None and (pname not in spec.variability_cv or spec.variability_cv[pname] <= 0):
            raise CartkinError(f"{key}: {pname} has no variability in the start scenario; give it one with "
                               f"start_cv = CV% (calibration reweights patients drawn with variability)")
        start_cv = start_cv if start_cv is not None else spec.variability_cv[pname]
        info = model.parameter(pname)
        if info.upper < math.inf:
            raise CartkinError(f"{key}: {pname} is bounded above ({info.upper:g}); a log-normal proposal would "
                               f"leave its bounds (use [calibration.profile] for it)")
        start_typical = spec.typical.get(pname, info.default)
        if typical is not None and not typical[0] <= start_typical <= typical[1]:
            raise CartkinError(f"{key}.typical: the start value {start_typical:g} is outside {list(typical)}")
        if cv is not None and not cv[0] <= start_cv <= cv[1]:
            raise CartkinError(f"{key}.cv: the start CV {start_cv:g} % is outside {list(cv)}")
        moving.append(Moving(
            pname, typical, _prior(raw["typical_prior"], f"{key}.typical_prior") if "typical_prior" in raw else None,
            cv, _prior(raw["cv_prior"], f"{key}.cv_prior") if "cv_prior" in raw else None,
            _number(raw.get("proposal_cv", 60.0), f"{key}.proposal_cv", positive=True), start_cv))

    targets = _parse_targets(data.get("targets"), tuple(map(str, names)), start)
    profile = None
    if "profile" in head:
        raw = _table(head["profile"], "calibration.profile")
        _unknown(raw, ("parameters", "scales", "size"), "calibration.profile")
        plist = raw.get("parameters")
        if not isinstance(plist, list) or not plist or not all(isinstance(p, str) for p in plist):
            raise CartkinError("calibration.profile.parameters: must be a list of parameter names")
        for pname in plist:
            if pname not in model.parameter_names:
                raise CartkinError("calibration.profile.parameters: "
                                   + unknown_name_message("parameter", pname, model.parameter_names, model.name))
        scales = raw.get("scales")
        if not isinstance(scales, list) or len(scales) < 2:
            raise CartkinError("calibration.profile.scales: must be a list of at least two scales")
        scales = tuple(_number(s, f"calibration.profile.scales[{i}]", non_negative=True) for i, s in enumerate(scales))
        if list(scales) != sorted(set(scales)):
            raise CartkinError("calibration.profile.scales: must be increasing without repeats")
        profile = Profile(tuple(plist), scales, _integer(raw.get("size", final_size), "calibration.profile.size",
                                                         low=10))
    return Targets(name=name, path=where, base=base, base_folder=base_folder, seed=seed,
                   proposal_size=proposal_size, final_size=final_size, rounds=rounds, min_ess=min_ess, draws=draws,
                   moving=tuple(moving), arms=tuple(arms), targets=targets, profile=profile)


def _base_scenario(source, folder: str | None) -> tuple[dict, str | None]:
    if not isinstance(source, (str, Path)):
        raise CartkinError(f"calibration.scenario: must be a string, got {source!r}")
    if str(source) == "default" or str(source) in list_scenarios():
        return _builtin_scenario_data(str(source)), None
    p = Path(source)
    if not p.is_absolute() and folder is not None and (Path(folder) / p).is_file():
        p = Path(folder) / p
    if not p.is_file():
        raise CartkinError(f"calibration.scenario: scenario file not found: {source}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CartkinError(f"calibration.scenario: {p} is not a valid TOML scenario ({exc})") from None
    uncertainty = data.get("population", {}).get("uncertainty")
    if isinstance(uncertainty, Mapping) and isinstance(uncertainty.get("draws"), str):
        draws = Path(uncertainty["draws"])  # keep it findable from the scenario's folder
        if not draws.is_absolute():
            uncertainty["draws"] = str(p.parent / draws)
    return data, str(p.parent)


def _parse_targets(raw, arm_names: tuple[str, ...], start: Scenario) -> tuple[Target, ...]:
    if not isinstance(raw, list) or not raw:
        raise CartkinError("targets: missing (required): add [[targets]] tables (statistic, count and n, ...)")
    columns = outcome_columns(start)
    out = []
    for i, t in enumerate(raw):
        key = f"targets[{i + 1}]"
        t = _table(t, key)
        _unknown(t, ("statistic", "count", "n", "value", "cv", "arms", "source", "label"), key)
        statistic = t.get("statistic")
        if not isinstance(statistic, str):
            raise CartkinError(f"{key}.statistic: missing (required), e.g. \"response_pct\"")
        column, kind, group = parse_statistic(statistic, f"{key}.statistic", columns)
        arms = t.get("arms", list(arm_names))
        if not isinstance(arms, list) or not arms:
            raise CartkinError(f"{key}.arms: must be a non-empty list of arm names")
        for a in arms:
            if a not in arm_names:
                raise CartkinError(f"{key}.arms: unknown arm {a!r} (arms: {', '.join(arm_names)})")
        if "n" not in t:
            raise CartkinError(f"{key}.n: missing (required): the number of patients behind the figure")
        n = _number(t["n"], f"{key}.n", positive=True)
        count = None
        if kind == "pct":
            if "count" in t:
                count = _number(t["count"], f"{key}.count", non_negative=True)
                if count > n:
                    raise CartkinError(f"{key}.count: {count:g} is more than n = {n:g}")
                if "value" in t:
                    raise CartkinError(f"{key}: give count or value (a %), not both")
                value = 100.0 * count / n
            elif "value" in t:
                value = _number(t["value"], f"{key}.value", non_negative=True)
                if value > 100:
                    raise CartkinError(f"{key}.value: a percentage must be <= 100, got {value:g}")
            else:
                raise CartkinError(f"{key}: give count (of n) or value (a %)")
            if "cv" in t:
                raise CartkinError(f"{key}.cv: a percentage has no CV (its uncertainty comes from n)")
        else:
            if "count" in t:
                raise CartkinError(f"{key}.count: only for percentages (statistics ending in _pct)")
            if "value" not in t:
                raise CartkinError(f"{key}.value: missing (required)")
            value = _number(t["value"], f"{key}.value", positive=True)
        cv = _number(t["cv"], f"{key}.cv", positive=True) if "cv" in t else None
        source = t.get("source", "")
        label = t.get("label", "")
        if not isinstance(source, str) or not isinstance(label, str):
            raise CartkinError(f"{key}: source and label must be strings")
        out.append(Target(statistic, column, kind, group, tuple(arms), n, value, count, cv, source, label))
    return tuple(out)


def parse_statistic(statistic: str, key: str, columns: set[str] | None) -> tuple[str, str, str]:
    """(column, kind, group) of `<column>_<kind>[_of_<group>]`, e.g. cmax_gmean_of_responders."""
    text = statistic
    for short, full in ALIASES.items():
        if text.startswith(short):
            text = full + text[len(short):]
    match = re.fullmatch(r"(.+?)_(pct|gmean|median)(?:_of_(responders|nonresponders))?", text)
    if not match:
        raise CartkinError(f"{key}: unknown statistic {statistic!r}: write <outcome>_<{'|'.join(KINDS)}>"
                           f"[_of_responders|_of_nonresponders], e.g. response_pct or cmax_gmean_of_responders")
    column, kind, group = match.group(1), match.group(2), match.group(3) or ""
    if columns is not None:
        if column not in columns:
            raise CartkinError(f"{key}: unknown statistic {statistic!r}: the scenario's outcomes have no "
                               f"column {column!r} (columns: {', '.join(sorted(columns))})")
        if group and "response" not in columns:
            raise CartkinError(f"{key}: {statistic!r} splits by response, but the scenario reports no response")
    return column, kind, group


def outcome_columns(scenario: Scenario) -> set[str] | None:
    """The per-patient columns the scenario's outcomes produce (found on a dummy one-patient input)."""
    import numpy as np
    times = scenario.times()
    model = scenario.model

    class Zeros(dict):
        def __missing__(self, name):
            return np.zeros((1, times.size)) if name in model.observables or name in model.state_names \
                else np.ones(1)
    names: set[str] = set()
    try:
        with np.errstate(all="ignore"):
            for outcome, settings in scenario.outcomes:
                names.update(outcome.compute(times, Zeros(), Zeros(), settings))
    except Exception:  # a check that cannot run on dummy data: columns are checked after simulation
        return None
    return names
