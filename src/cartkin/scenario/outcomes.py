"""Comparison outcomes as a registry: each kind of outcome is one `Outcome` entry in `REGISTRY`.

A scenario's ``[outcomes.<name>]`` table selects the entry ``<name>`` and gives its settings, e.g.::

    [outcomes.exposure]
    observable = "car_blood"
    limit = 0.1

    [outcomes.peak]
    observables = ["il6", "il10"]
    labels = { il6 = "IL-6", il10 = "IL-10" }

Only the listed outcomes run, in the order written. An entry has

* ``settings``: a frozen dataclass; its fields are the table's keys, declared with `setting` so the
  scenario parser checks types, signs, days (within the horizon) and that named observables and
  parameters exist in the model (errors name the key, e.g. ``outcomes.aplasia.baseline``);
* ``compute(times, observables, parameters, settings)``: per-patient arrays by outcome name, from the
  output times, the batch's observables (``observables["b_cells"]``: patients × times) and the
  patients' parameters (``parameters["B0"]``: one value per patient);
* ``summary(settings, scenario)``: the summary table's CSV statistics and display columns;
* ``text(settings, scenario)``: the sentence defining the outcome in summary.md;
* ``curves(settings)``: observables whose time courses the comparison keeps for the figures;
* ``legacy``: flat ``[outcomes]`` keys of older scenario files that set one of its settings.

Adding an outcome is one entry::

    @dataclass(frozen=True)
    class TroughSettings:
        observable: str = setting(refers_to="observable")
        day: float = setting(28.0, check="positive", day=True)

    register(Outcome(
        "trough", TroughSettings,
        compute=lambda t, obs, par, s: {"trough": obs[s.observable][:, np.searchsorted(t, s.day)]},
        summary=lambda s, scenario: ([Statistic("trough")],
                                     [Display(f"trough d{s.day:g}", lambda r: quantile_text(r, "trough"))]),
        text=lambda s, scenario: f"Trough: `{s.observable}` on day {s.day:g}."))

after which ``[outcomes.trough] observable = "car_blood"`` in a scenario adds ``trough`` to
patients.csv and ``trough_median``, ``trough_p05``, ``trough_p95`` to summary.csv.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .. import metrics
from ..errors import CartkinError
from ..table import format_number, quantile_text

HALF_LIFE_WINDOW = 84.0  # days: terminal half-life is fitted on the curve up to this day
#: half-lives beyond this many fitting windows are shown as '>' it: no measurable decline by day 84
HALF_LIFE_CAP = 10


def setting(default: Any = MISSING, *, refers_to: str = "", check: str = "", day: bool = False):
    """A settings field. refers_to: "observable", "observable or state" or "parameter" (the model must have
    the name; for a list every name, for a table every key); check: "positive", "non_negative", "percent"
    (in (0, 100]) or "fraction" (in (0, 1]);
    day: a day (or days) within the horizon (a default beyond it is clipped, a given one is an error)."""
    metadata = {"refers_to": refers_to, "check": check, "day": day}
    if isinstance(default, (list, dict)):
        frozen = tuple(default) if isinstance(default, list) else dict(default)
        return field(default_factory=lambda: frozen, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Statistic:
    """How one per-patient outcome enters summary.csv: "quantiles" gives <outcome>_median, _p05, _p95
    (finite values), "percent" gives <outcome>_pct (% of solved patients with a value > 0.5), "share" gives
    <outcome>_pct over the patients where it is defined (finite), e.g. the CD19− share of relapses."""
    outcome: str
    kind: str = "quantiles"
    name: str = ""  # summary.csv stem (default: the outcome's name)

    def values(self, values: np.ndarray, ok: np.ndarray) -> dict[str, float]:
        stem = self.name or self.outcome
        if self.kind in ("percent", "share"):
            v = values[ok & np.isfinite(values)] if self.kind == "share" else values[ok]
            return {stem + "_pct": float(100.0 * np.mean(v > 0.5)) if v.size else float("nan")}
        v = values[np.isfinite(values)]
        names = [stem + suffix for suffix in ("_median", "_p05", "_p95")]
        if not v.size:
            return dict.fromkeys(names, float("nan"))
        return dict(zip(names, (float(x) for x in np.percentile(v, [50, 5, 95]))))


@dataclass(frozen=True)
class Display:
    """A column of the displayed summary: its header and the text of a summary.csv row in it."""
    header: str
    text: Callable[[dict], str]


@dataclass(frozen=True)
class Outcome:
    """One kind of comparison outcome (see the module docstring)."""
    name: str
    settings: type
    compute: Callable[[np.ndarray, Mapping[str, np.ndarray], Mapping[str, np.ndarray], Any], dict]
    summary: Callable[[Any, Any], tuple[Sequence[Statistic], Sequence[Display]]]
    text: Callable[[Any, Any], str]
    curves: Callable[[Any], Sequence[str]] = lambda settings: ()
    legacy: Mapping[str, str] = field(default_factory=dict)  # flat [outcomes] key -> settings field
    #: per-patient columns stored as codes but written as words: column -> {code: word} (missing: empty)
    labels: Mapping[str, Mapping[float, str]] = field(default_factory=dict)


#: name -> Outcome; a scenario's [outcomes.<name>] table selects the entry
REGISTRY: dict[str, Outcome] = {}


def register(outcome: Outcome) -> Outcome:
    """Add an outcome kind to `REGISTRY` (its name must be new)."""
    if outcome.name in REGISTRY:
        raise CartkinError(f"outcome '{outcome.name}' is already registered")
    REGISTRY[outcome.name] = outcome
    return outcome


@dataclass(frozen=True)
class Outcomes:
    """The outcomes a scenario reports: (entry name, settings) pairs in report order."""
    entries: tuple[tuple[str, Any], ...] = ()

    def __iter__(self) -> Iterator[tuple[Outcome, Any]]:
        return iter((REGISTRY[name], settings) for name, settings in self.entries)

    def __contains__(self, name: str) -> bool:
        return any(n == name for n, _ in self.entries)

    def get(self, name: str):
        """The settings of outcome `name`, or None when the scenario does not report it."""
        return next((s for n, s in self.entries if n == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.entries)

    def counted(self, scenario) -> tuple[str, ...]:
        """Per-patient yes/no outcomes (those summarised as "percent", e.g. response, crs_grade3plus): what a
        trial replicate counts, x of its patients."""
        return tuple(statistic.outcome for outcome, settings in self
                     for statistic in outcome.summary(settings, scenario)[0] if statistic.kind == "percent")


# ---- exposure ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExposureSettings:
    observable: str = setting(refers_to="observable or state")  # Cmax, Tmax, AUC, half-life, Tlast of it
    limit: float = setting(0.1, check="positive")  # quantification limit (Tlast, half-life)


def _exposure(times, observables, parameters, s: ExposureSettings) -> dict:
    curve = observables[s.observable]
    out = metrics.exposure_summary(times, curve, limit=s.limit)
    # the half-life of the contraction phase (to day 84, as in label PK), not of the memory plateau
    window = times <= min(HALF_LIFE_WINDOW, times[-1])
    out["half_life"] = metrics.terminal_half_life(times[window], curve[:, window], limit=s.limit)
    return out


def _exposure_summary(s: ExposureSettings, scenario):
    unit = scenario.model.unit(s.observable)
    statistics = [Statistic(k) for k in ("cmax", "tmax", "auc_0_28", "tlast", "half_life")]
    display = [Display(f"Cmax {unit}".rstrip(), lambda r: quantile_text(r, "cmax")),
               Display("Tmax d", lambda r: quantile_text(r, "tmax")),
               Display(f"AUC0-28 {unit}·d" if unit else "AUC0-28", lambda r: quantile_text(r, "auc_0_28")),
               Display(f"t1/2 d (to d{HALF_LIFE_WINDOW:g})", half_life_text),
               Display("Tlast d", lambda r: tlast_text(r, scenario.horizon))]
    return statistics, display


def _exposure_text(s: ExposureSettings, scenario) -> str:
    return ("Definitions: Cmax, Tmax, AUC0–28 (linear-up/log-down), terminal half-life (log-linear best fit "
            f"after Tmax, on the curve up to day {HALF_LIFE_WINDOW:g}; over {HALF_LIFE_CAP * HALF_LIFE_WINDOW:g} "
            f"days shown as '>', i.e. no measurable decline in that window) and Tlast (last day above "
            f"{s.limit:g}; ≥ horizon when still above it at the end) of `{s.observable}`.")


def half_life_text(row: dict) -> str:
    """Half-life quantiles; a value over HALF_LIFE_CAP windows is shown as '>cap' (the CSV keeps it)."""
    cap = HALF_LIFE_CAP * HALF_LIFE_WINDOW

    def one(v):
        return f">{cap:g}" if v > cap else format_number(v)
    return f"{one(row['half_life_median'])} [{one(row['half_life_p05'])}–{one(row['half_life_p95'])}]"


def tlast_text(row: dict, horizon: float) -> str:
    """Tlast quantiles, with values at the horizon shown as '≥ horizon' (still detectable at the end)."""
    def one(v):
        return f"≥{horizon:g}" if v >= horizon - 1e-9 else format_number(v)
    return f"{one(row['tlast_median'])} [{one(row['tlast_p05'])}–{one(row['tlast_p95'])}]"


register(Outcome("exposure", ExposureSettings, _exposure, _exposure_summary, _exposure_text,
                 curves=lambda s: (s.observable,), legacy={"exposure": "observable", "limit": "limit"}))


# ---- response, MRD, relapse --------------------------------------------------------------------------

@dataclass(frozen=True)
class ResponseSettings:
    observable: str = setting(refers_to="observable")  # marrow blast %
    day: float = setting(28.0, check="positive", day=True)  # response assessed on this day
    threshold: float = setting(5.0, check="percent")  # blast % below which a patient responds
    mrd_threshold: float = setting(0.01, check="percent")  # blast % below which a responder is MRD-negative
    relapse_days: tuple[float, ...] = setting([182.5, 365.0], check="positive", day=True)  # relapse-free at

    def __post_init__(self):
        if self.mrd_threshold > self.threshold:
            raise CartkinError(f"mrd_threshold: {self.mrd_threshold:g} % is above the response threshold "
                               f"({self.threshold:g} %); MRD negativity is a deeper response")
        for i in range(1, len(self.relapse_days)):
            if self.relapse_days[i] <= self.relapse_days[i - 1]:
                raise CartkinError(f"relapse_days[{i}]: days must be increasing without repeats, got "
                                   f"{self.relapse_days[i - 1]:g} then {self.relapse_days[i]:g}")


def _response(times, observables, parameters, s: ResponseSettings) -> dict:
    blast = observables[s.observable]
    out = {"response": metrics.response(times, blast, day=s.day, threshold=s.threshold),
           "mrd_negative": metrics.mrd_negative(times, blast, day=s.day, threshold=s.mrd_threshold),
           "relapse_day": metrics.relapse_day(times, blast, threshold=s.threshold, response_day=s.day)}
    for day in s.relapse_days:
        out[f"relapse_free_{day:g}"] = metrics.relapse_free(times, blast, at_day=day, threshold=s.threshold,
                                                            response_day=s.day)
    return out


def _response_summary(s: ResponseSettings, scenario):
    statistics = [Statistic("response", "percent"), Statistic("mrd_negative", "percent"),
                  *(Statistic(f"relapse_free_{d:g}", "percent") for d in s.relapse_days)]
    display = [Display(f"resp d{s.day:g} %", lambda r: format_number(r["response_pct"])),
               Display("MRD- %", lambda r: format_number(r["mrd_negative_pct"])),
               *(Display(f"RFS d{d:g} %", lambda r, d=d: format_number(r[f"relapse_free_{d:g}_pct"]))
                 for d in s.relapse_days)]
    return statistics, display


def _response_text(s: ResponseSettings, scenario) -> str:
    return (f"Response: `{s.observable}` < {s.threshold:g}% on day {s.day:g}; MRD-negative: "
            f"< {s.mrd_threshold:g}%. Relapse-free (RFS) at day d: responded and `{s.observable}` stayed below "
            f"{s.threshold:g}% until d (non-responders count as events).")


register(Outcome("response", ResponseSettings, _response, _response_summary, _response_text,
                 curves=lambda s: (s.observable,),
                 legacy={"blast": "observable", "response_day": "day", "response_threshold": "threshold",
                         "mrd_threshold": "mrd_threshold", "relapse_days": "relapse_days"}))


# ---- aplasia -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AplasiaSettings:
    observable: str = setting(refers_to="observable")  # e.g. B cells
    baseline: str = setting(refers_to="parameter")  # each patient's baseline level of it
    fraction: float = setting(0.1, check="fraction")  # aplasia while observable < fraction × baseline
    label: str = setting("aplasia")  # column header (with " d") and report text
    at_days: tuple[float, ...] = setting([], check="positive", day=True)  # aplasia_<day>: still in aplasia


def _aplasia(times, observables, parameters, s: AplasiaSettings) -> dict:
    threshold = s.fraction * parameters[s.baseline]
    out = {"aplasia_days": metrics.duration_below(times, observables[s.observable], threshold)}
    for day in s.at_days:
        out[f"aplasia_{day:g}"] = metrics.aplasia_at(times, observables[s.observable], parameters[s.baseline],
                                                     day=day, fraction=s.fraction)
    return out


def _aplasia_summary(s: AplasiaSettings, scenario):
    statistics = [Statistic("aplasia_days"), *(Statistic(f"aplasia_{d:g}", "percent") for d in s.at_days)]
    display = [Display(f"{s.label} d", lambda r: format_number(r["aplasia_days_median"])),
               *(Display(f"{s.label} d{d:g} %", lambda r, d=d: format_number(r[f"aplasia_{d:g}_pct"]))
                 for d in s.at_days)]
    return statistics, display


register(Outcome(
    "aplasia", AplasiaSettings, _aplasia, _aplasia_summary,
    text=lambda s, scenario: (f"{s.label}: days with `{s.observable}` below {s.fraction:g} × {s.baseline}"
                              + ("; % of patients still below it on day " + ", ".join(f"{d:g}" for d in s.at_days)
                                 if s.at_days else "") + "."),
    curves=lambda s: (s.observable,), legacy={"aplasia_fraction": "fraction"}))


# ---- peaks -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeakSettings:
    observables: tuple[str, ...] = setting(refers_to="observable")  # peak_<name> for each
    labels: Mapping[str, str] = setting({}, refers_to="observable")  # display name (default: the name)

    def __post_init__(self):
        extra = [k for k in self.labels if k not in self.observables]
        if extra:
            raise CartkinError(f"labels: '{extra[0]}' is not one of observables {list(self.observables)}")


def _peak(times, observables, parameters, s: PeakSettings) -> dict:
    return {f"peak_{name}": metrics.cmax(times, observables[name]) for name in s.observables}


def _peak_summary(s: PeakSettings, scenario):
    display = [Display(f"{s.labels.get(name, name)} peak {scenario.model.unit(name)}".rstrip(),
                       lambda r, key=f"peak_{name}": format_number(r[key + "_median"])) for name in s.observables]
    return [Statistic(f"peak_{name}") for name in s.observables], display


register(Outcome("peak", PeakSettings, _peak, _peak_summary,
                 text=lambda s, scenario: "Peaks: maximum of " + ", ".join(f"`{n}`" for n in s.observables) + "."))


# ---- CRS grade -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CrsSettings:
    observable: str = setting(refers_to="observable")  # IL-6 (pg/mL)
    thresholds: tuple[float, ...] = setting(list(metrics.CRS_IL6_THRESHOLDS), check="positive")  # grades 1–4

    def __post_init__(self):
        if len(self.thresholds) != 4 or list(self.thresholds) != sorted(set(self.thresholds)):
            raise CartkinError(f"thresholds: four increasing peak levels for grades 1 to 4, got {list(self.thresholds)}")


def _crs(times, observables, parameters, s: CrsSettings) -> dict:
    grade = np.asarray(metrics.crs_grade(times, observables[s.observable], s.thresholds), dtype=float)
    with np.errstate(invalid="ignore"):
        return {"crs_grade": grade, "crs_any": np.where(np.isnan(grade), np.nan, grade >= 1),
                "crs_grade3plus": np.where(np.isnan(grade), np.nan, grade >= 3)}


register(Outcome(
    "crs", CrsSettings, _crs,
    summary=lambda s, scenario: ([Statistic("crs_any", "percent"), Statistic("crs_grade3plus", "percent")],
                                 [Display("CRS any %", lambda r: format_number(r["crs_any_pct"])),
                                  Display("CRS ≥3 %", lambda r: format_number(r["crs_grade3plus_pct"]))]),
    text=lambda s, scenario: (f"CRS grade from peak `{s.observable}`: grades 1–4 from "
                              + "/".join(f"{x:g}" for x in s.thresholds) + " — a modelling assumption "
                              "(no clinical grading uses cytokine levels; cartkin.metrics.crs_grade).")))


# ---- relapse type ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RelapseTypeSettings:
    observable: str = setting(refers_to="observable")  # total blast %
    cd19neg: str = setting(refers_to="observable")  # the CD19-negative part of it
    day: float = setting(28.0, check="positive", day=True)  # response day
    threshold: float = setting(5.0, check="percent")  # relapse: blasts back at or above it


def _relapse_type(times, observables, parameters, s: RelapseTypeSettings) -> dict:
    kind = metrics.relapse_type(times, observables[s.observable], observables[s.cd19neg], s.threshold, s.day)
    kind = np.atleast_1d(kind)
    return {"relapse_type": np.where(kind == "cd19neg", 1.0, np.where(kind == "cd19pos", 0.0, np.nan))}


#: relapse_type codes and the words patients.csv shows for them
RELAPSE_TYPES = {1.0: "cd19neg", 0.0: "cd19pos"}

register(Outcome(
    "relapse_type", RelapseTypeSettings, _relapse_type,
    summary=lambda s, scenario: ([Statistic("relapse_type", "share", name="relapse_cd19neg")],
                                 [Display("CD19− relapses %", lambda r: format_number(r["relapse_cd19neg_pct"]))]),
    text=lambda s, scenario: (f"Relapse type (patients.csv `relapse_type`: `cd19neg`, `cd19pos`, empty without "
                              f"relapse): CD19− when `{s.cd19neg}` is the majority of `{s.observable}` on the relapse "
                              f"day; the summary gives the CD19− share of relapses (`relapse_cd19neg_pct`)."),
    labels={"relapse_type": RELAPSE_TYPES}))
