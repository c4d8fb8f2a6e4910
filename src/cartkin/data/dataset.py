"""NONMEM-style long data: one row per observation or dose record, read, checked and grouped by subject.

Columns (standard names match case-insensitively; rename others with ``column_map={"time": "TIME"}``,
file column → standard name):

========  =================================================================================================
ID        subject (text; "12.0" becomes "12", other text is kept as written, e.g. "007")
TIME      days since the first infusion, >= 0
DV        the observed value (for CENS = 1: the limit of quantification)
DVID      which observable: its name, or a number mapped with ``dvid_map={1: "nTA"}`` (``{2: "skip"}``
          leaves that DVID's rows out); may be left out
          when the model has a single observable
MDV       optional; 1 = no observation on this row
EVID      optional; 0 observation, 1 dose (AMT cells/kg, or cells with ``dose_unit="cells"``), 2 ignored;
          without an EVID column, rows with AMT > 0 are doses
AMT       dose amount (dose rows); never negative
CENS      optional; 1 = below the limit of quantification, DV holds the limit (Beal M3)
LLOQ      optional; a limit per row: DV < LLOQ is censored at LLOQ
========  =================================================================================================

Covariate columns set model parameters per subject: ``covariates={"Reg": "nB0"}``, and a column named
exactly as a per-patient parameter (``WT``, ``L0``, ``nB0``) in every file does so without being listed;
a covariate must be
constant within a subject (empty cells are allowed if the others agree) and within its parameter's bounds.
Missing numbers are written as an empty cell, ``.``, ``NA`` or ``NaN``.

Rules (all documented choices):

* Order: within one subject and one observable, rows must be in time order. Observables may come in
  separate blocks (the Liu 2022 files list CAR T then leukaemia per patient); rows of one ID need not be
  contiguous. The resulting `Subject` is sorted by (time, observable).
* Several files: an ID found in two files is an error unless ``prefix_ids=True``, which names subjects
  ``"<file stem>-<ID>"``.
* Baseline: "pre-dose" means TIME <= the subject's first dose time (TIME 0 when it has no dose records:
  day 0 is the first infusion in cartkin). ``baseline=`` chooses what happens to pre-dose observations:
  ``"drop"`` (default) drops them all — the model starts from its own initial state, which is given by
  parameters or covariates (a pre-infusion CAR T count of 0 cannot enter a log-scale residual, and the
  Liu 2022 leukaemia value at day 0 equals ``Reg`` = nB0, which the model reproduces exactly);
  ``"zeros"`` drops only pre-dose DV = 0 (keeps informative baselines); ``"keep"`` keeps everything.
  Dropped rows are listed in `Dataset.excluded` (and counted by `summary()`), never silently lost.
* Censoring, first rule that applies: CENS = 1 (limit = DV); DV < the row's LLOQ (limit = LLOQ);
  DV < ``lloq`` (a number, or a dict by observable name or DVID code; limit = lloq) for rows without
  their own LLOQ; DV <= ``censor_floor`` (number or dict likewise; limit = floor).
  `Subject.values` keeps the DV as read, `Subject.limits` the limit (NaN where not censored).
* With ``positive=True`` (default, needed by the proportional / log-scale error model) an uncensored DV
  and a censoring limit must be > 0; pass ``positive=False`` for additive-error data.
* Every subject needs at least one observation left after these rules.

Errors are `CartkinError` with one line naming the file and line (or array row), the column and the ID.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..dosing import AMOUNT, FLAT, PER_KG, Infusion, Regimen
from ..errors import CartkinError
from ..model.definition import Model, unknown_name_message

STANDARD = ("ID", "TIME", "DV", "DVID", "MDV", "EVID", "AMT", "CENS", "LLOQ")
BASELINE = ("drop", "zeros", "keep")
SKIP = "skip"  # dvid_map={2: "skip"}: rows of that DVID are not fitted (listed in Dataset.excluded)
_MISSING = {"", ".", "na", "nan"}


def _frozen_array(values, dtype) -> np.ndarray:
    a = np.array(values, dtype=dtype)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Subject:
    """One subject's observations (sorted by time), censoring, covariates and doses.

    times, values, observable_index (into the model's observables), censored, limits: one entry per
    observation. covariates: parameter name → value. regimen: the subject's dose records, or None.
    """
    id: str
    times: np.ndarray
    values: np.ndarray
    observable_index: np.ndarray
    censored: np.ndarray
    limits: np.ndarray
    covariates: Mapping[str, float] = field(default_factory=dict)
    regimen: Regimen | None = None

    def __post_init__(self):
        object.__setattr__(self, "id", str(self.id))
        arrays = {"times": float, "values": float, "observable_index": np.int64, "censored": bool,
                  "limits": float}
        for name, dtype in arrays.items():
            a = np.atleast_1d(np.asarray(getattr(self, name)))
            object.__setattr__(self, name, _frozen_array(a, dtype))
        n = self.times.size
        for name in arrays:
            if getattr(self, name).shape != (n,):
                raise CartkinError(f"subject {self.id}: {name} has shape {getattr(self, name).shape}, "
                                   f"times has ({n},)")
        if n == 0:
            raise CartkinError(f"subject {self.id}: no observations")
        if not np.all(np.isfinite(self.times)) or np.any(self.times < 0):
            raise CartkinError(f"subject {self.id}: observation times must be finite and >= 0")
        if np.any(np.diff(self.times) < 0):
            raise CartkinError(f"subject {self.id}: observation times must be sorted")
        if np.any(self.censored & ~np.isfinite(self.limits)):
            raise CartkinError(f"subject {self.id}: a censored observation needs a finite limit")
        object.__setattr__(self, "covariates", {str(k): float(v) for k, v in dict(self.covariates).items()})
        if self.regimen is not None and not isinstance(self.regimen, Regimen):
            raise CartkinError(f"subject {self.id}: regimen must be a Regimen, got {type(self.regimen).__name__}")

    @property
    def n_observations(self) -> int:
        return int(self.times.size)

    @property
    def n_censored(self) -> int:
        return int(self.censored.sum())

    def parameters(self, model: Model, fixed: Mapping[str, float] | None = None) -> np.ndarray:
        """This subject's full parameter vector: the model defaults, then its covariates, then `fixed`."""
        p = np.array([q.default for q in model.parameter_info], dtype=float)
        for name, value in (*self.covariates.items(), *(fixed or {}).items()):
            p[model.parameter_index(name)] = value
        return p


@dataclass(frozen=True, eq=False)
class Dataset:
    """Subjects' data for one model. `observables` are the model's (Subject.observable_index points here).

    excluded: rows dropped by the baseline rules, as (ID, TIME, observable, reason, where).
    """
    subjects: tuple[Subject, ...]
    observables: tuple[str, ...]
    source: str = ""
    excluded: tuple[tuple[str, float, str, str, str], ...] = ()
    model_name: str = ""

    def __post_init__(self):
        subjects = tuple(self.subjects)
        if not subjects:
            raise CartkinError("a dataset needs at least one subject")
        seen = set()
        for s in subjects:
            if not isinstance(s, Subject):
                raise CartkinError(f"a dataset holds Subject records, not {type(s).__name__}")
            if s.id in seen:
                raise CartkinError(f"subject ID {s.id} appears twice in the dataset")
            seen.add(s.id)
            if np.any(s.observable_index < 0) or np.any(s.observable_index >= len(self.observables)):
                raise CartkinError(f"subject {s.id}: observable index outside 0..{len(self.observables) - 1}")
        object.__setattr__(self, "subjects", subjects)
        object.__setattr__(self, "observables", tuple(self.observables))
        object.__setattr__(self, "excluded", tuple(self.excluded))

    # --- summaries ----------------------------------------------------------------------------------
    @property
    def n_subjects(self) -> int:
        return len(self.subjects)

    @property
    def n_observations(self) -> int:
        return sum(s.n_observations for s in self.subjects)

    @property
    def n_censored(self) -> int:
        return sum(s.n_censored for s in self.subjects)

    @property
    def observables_used(self) -> tuple[str, ...]:
        """Observables with at least one observation, in the model's order."""
        used = sorted({int(i) for s in self.subjects for i in s.observable_index})
        return tuple(self.observables[i] for i in used)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        """Parameters set per subject by covariates (in first-seen order)."""
        names: dict[str, None] = {}
        for s in self.subjects:
            names.update(dict.fromkeys(s.covariates))
        return tuple(names)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.subjects)

    def subject(self, id) -> Subject:
        for s in self.subjects:
            if s.id == str(id):
                return s
        raise CartkinError(f"no subject with ID {id!r} in the data")

    def counts(self) -> dict[str, tuple[int, int]]:
        """observable → (observations, of which censored)."""
        out = {}
        for k, name in enumerate(self.observables):
            n = sum(int(np.sum(s.observable_index == k)) for s in self.subjects)
            c = sum(int(np.sum((s.observable_index == k) & s.censored)) for s in self.subjects)
            if n:
                out[name] = (n, c)
        return out

    def summary(self) -> str:
        """One line: subjects, observations (censored) per observable, doses, covariates, exclusions."""
        parts = [f"{self.n_subjects} subjects", f"{self.n_observations} observations ({self.n_censored} censored: "
                 + ", ".join(f"{name} {n} ({c})" for name, (n, c) in self.counts().items()) + ")"]
        n_doses = sum(len(s.regimen) for s in self.subjects if s.regimen is not None)
        if n_doses:
            parts.append(f"{n_doses} dose records")
        if self.covariate_names:
            parts.append("covariates " + ", ".join(self.covariate_names))
        if self.excluded:
            reasons: dict[str, int] = {}
            for row in self.excluded:
                reasons[row[3]] = reasons.get(row[3], 0) + 1
            parts.append("excluded " + ", ".join(f"{n} {r}" for r, n in reasons.items()))
        head = f"{self.model_name}: " if self.model_name else ""
        return head + "; ".join(parts)

    def __repr__(self) -> str:
        return f"Dataset({self.summary()})"

    # --- round trip ---------------------------------------------------------------------------------
    def to_long(self, dose_unit: str = "per_kg") -> list[dict]:
        """Rows in the standard columns (ID, TIME, DV, DVID, MDV, EVID, AMT, CENS + covariate parameters).

        Observables are written by name; a censored row gets CENS = 1 and DV = its limit (the value as read
        is not kept). Doses become EVID = 1 rows in `dose_unit` ("per_kg" or "cells"), before observations
        at the same time. `read_data(path, model, covariates={p: p for p in dataset.covariate_names},
        dose_unit=...)` reads the file back to an equivalent dataset. Missing entries are None.
        """
        _check_dose_unit(dose_unit)
        want = PER_KG if dose_unit == "per_kg" else FLAT
        covs = self.covariate_names
        rows = []
        for s in self.subjects:
            base = {c: s.covariates.get(c) for c in covs}
            events = []
            for d in (s.regimen or ()):
                if d.kind != want:
                    kind = {PER_KG: "a per-kg dose", FLAT: "a flat dose", AMOUNT: "an amount dose"}[d.kind]
                    raise CartkinError(f"subject {s.id}: {kind} on day {d.time:g} cannot be written with "
                                       f"dose_unit={dose_unit!r}")
                events.append((d.time, 0, {"ID": s.id, "TIME": d.time, "DV": None, "DVID": None, "MDV": 1,
                                           "EVID": 1, "AMT": d.value, "CENS": None, **base}))
            for i in range(s.n_observations):
                cens = bool(s.censored[i])
                events.append((float(s.times[i]), 1, {
                    "ID": s.id, "TIME": float(s.times[i]),
                    "DV": float(s.limits[i] if cens else s.values[i]),
                    "DVID": self.observables[s.observable_index[i]], "MDV": 0, "EVID": 0, "AMT": None,
                    "CENS": int(cens), **base}))
            events.sort(key=lambda e: (e[0], e[1]))
            rows.extend(e[2] for e in events)
        return rows

    def to_csv(self, path, dose_unit: str = "per_kg") -> Path:
        """Write `to_long()` as CSV (missing entries as '.'); returns the path."""
        rows = self.to_long(dose_unit)
        path = Path(path)
        columns = list(rows[0].keys())
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for r in rows:
                writer.writerow(["." if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else r[c])
                                 for c in columns])
        return path

    # --- construction from arrays -------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, model: Model | str, ids, times, values, observables, censored=None, limits=None,
                    covariates: Mapping[str, Sequence[float]] | None = None,
                    regimens: Regimen | Mapping[str, Regimen] | None = None, *,
                    lloq=None, censor_floor=None, baseline: str = "drop",
                    positive: bool = True) -> "Dataset":
        """A dataset from long arrays, one entry per observation (for tests and simulated data).

        observables: one name for all, or per row a name or an index into model.observables.
        censored: per-row booleans; a censored row's limit is limits[i] when given, else values[i].
        covariates: parameter → per-row values (constant within each subject).
        regimens: one Regimen for every subject, or ID → Regimen.
        The baseline, censoring and positivity rules of `read_data` apply; errors name the row.
        """
        from ..model.registry import load_model
        model = load_model(model)
        ids = [_normalise_id(str(i)) for i in np.atleast_1d(np.asarray(ids, dtype=object))]
        n = len(ids)

        def column(name, data, default=None):
            if data is None:
                return [default] * n
            arr = np.atleast_1d(np.asarray(data, dtype=object))
            if arr.size == 1 and n != 1:
                return [arr.item()] * n
            if arr.shape != (n,):
                raise CartkinError(f"from_arrays: {name} has {arr.size} entries, ids has {n}")
            return list(arr)

        t_col, v_col = column("times", times), column("values", values)
        o_col = column("observables", observables)
        c_col = column("censored", censored, False)
        l_col = column("limits", limits, None)
        covariates = dict(covariates or {})
        cov_cols = {p: column(f"covariate {p}", v) for p, v in covariates.items()}
        for p in covariates:
            model.parameter_index(p)
        rows_by_id: dict[str, list[dict]] = {}
        for i in range(n):
            where = f"subject {ids[i]}, row {i}"
            row = {"_where": where, "_at": f"row {i}", "ID": ids[i], "EVID": 0.0}
            row["TIME"] = _number(t_col[i], where, "times")
            row["DV"] = _number(v_col[i], where, "values")
            o = o_col[i]
            if isinstance(o, (int, np.integer)) and not isinstance(o, bool):
                if not 0 <= int(o) < len(model.observables):
                    raise CartkinError(f"{where}: observable index {o} outside 0..{len(model.observables) - 1} "
                                       f"for model {model.name}")
                o = model.observables[int(o)]
            row["DVID"] = str(o)
            cens = c_col[i]
            if cens not in (True, False, 0, 1):
                raise CartkinError(f"{where}: censored must be true/false, got {cens!r}")
            if cens:
                row["CENS"] = 1.0
                if l_col[i] is not None:
                    row["LLOQ_LIMIT"] = _number(l_col[i], where, "limits")
            for p, col in cov_cols.items():
                row[p] = _number(col[i], where, f"covariate {p}")
            rows_by_id.setdefault(ids[i], []).append(row)
        if not rows_by_id:
            raise CartkinError("from_arrays: no rows")
        if isinstance(regimens, Regimen) or regimens is None:
            regimen_of = {sid: regimens for sid in rows_by_id}
        else:
            regimen_of = {_normalise_id(str(k)): v for k, v in dict(regimens).items()}
            unknown = set(regimen_of) - set(rows_by_id)
            if unknown:
                raise CartkinError(f"from_arrays: regimens given for unknown subject ID {sorted(unknown)[0]!r}")
        rules = _Rules(model, {}, {p: p for p in covariates}, _per_observable(lloq, "lloq", model, {}),
                       _per_observable(censor_floor, "censor_floor", model, {}), "per_kg",
                       _check_baseline(baseline), positive)
        subjects, excluded = [], []
        for sid, rows in rows_by_id.items():
            subject, dropped = _build_subject(sid, rows, rules, "arrays", regimen_of.get(sid))
            subjects.append(subject)
            excluded.extend(dropped)
        return cls(tuple(subjects), tuple(model.observables), "arrays", tuple(excluded), model.name)


# --- reading ----------------------------------------------------------------------------------------

def read_data(paths: str | Path | Sequence[str | Path], model: Model | str,
              column_map: Mapping[str, str] | None = None, dvid_map: Mapping[int | str, str] | None = None,
              covariates: Mapping[str, str] | None = None, lloq: float | Mapping | None = None,
              censor_floor: float | Mapping | None = None, dose_unit: str = "per_kg", *,
              prefix_ids: bool = False, baseline: str = "drop", positive: bool = True) -> Dataset:
    """Read one or more CSV files in long format into a `Dataset` for `model` (rules: module docstring).

    Liu 2022: ``read_data([cr, nr], "liu2022", column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"},
    dvid_map={1: "nTA", 2: "nB"}, covariates={"Reg": "nB0"}, censor_floor=0.2, prefix_ids=True)``.
    """
    from ..model.registry import load_model
    model = load_model(model)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise CartkinError("no data files given")
    resolved = [p.resolve() for p in paths]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise CartkinError(f"data file {paths[i]} is given twice")
    _check_dose_unit(dose_unit)
    covariates = dict(covariates or {})
    covariates.update(_named_covariates(paths, dict(column_map or {}), model, covariates))
    for column, parameter in covariates.items():
        model.parameter_index(parameter)
        if str(column).upper() in STANDARD:
            raise CartkinError(f"covariate column {column!r} is a standard column name; rename it with column_map")
    targets = list(covariates.values())
    for parameter in set(targets):
        if targets.count(parameter) > 1:
            raise CartkinError(f"two covariate columns set parameter {parameter}")
    dvid = {}
    for key, name in (dvid_map or {}).items():
        if name not in model.observables and name != SKIP:
            raise CartkinError("dvid_map: " + unknown_name_message("observable", str(name), model.observables,
                                                                 model.name))
        dvid[_code(key)] = name
    rules = _Rules(model, dvid, covariates, _per_observable(lloq, "lloq", model, dvid),
                   _per_observable(censor_floor, "censor_floor", model, dvid), dose_unit,
                   _check_baseline(baseline), positive)
    rows_by_id: dict[str, list[dict]] = {}
    id_file: dict[str, Path] = {}
    for path in paths:
        try:
            for row in _read_rows(path, dict(column_map or {}), covariates):
                sid = f"{path.stem}-{row['ID']}" if prefix_ids else row["ID"]
                if sid in id_file and id_file[sid] != path:
                    hint = "" if prefix_ids else "; renumber one file or pass prefix_ids=True"
                    raise CartkinError(f"subject ID {sid} appears in both {id_file[sid].name} and {path.name}{hint}")
                id_file[sid] = path
                rows_by_id.setdefault(sid, []).append(row)
        except UnicodeDecodeError as exc:
            raise CartkinError(f"{path.name}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    if not rows_by_id:
        raise CartkinError(f"no data rows in {', '.join(p.name for p in paths)}")
    subjects, excluded = [], []
    for sid, rows in rows_by_id.items():
        subject, dropped = _build_subject(sid, rows, rules, id_file[sid].name, None)
        subjects.append(subject)
        excluded.extend(dropped)
    return Dataset(tuple(subjects), tuple(model.observables), ", ".join(str(p) for p in paths),
                   tuple(excluded), model.name)


def _check_baseline(baseline):
    if baseline not in BASELINE:
        raise CartkinError(f"baseline must be one of {', '.join(repr(b) for b in BASELINE)}, got {baseline!r}")
    return baseline


def _check_dose_unit(dose_unit):
    if dose_unit not in ("per_kg", "cells"):
        raise CartkinError(f"dose_unit must be 'per_kg' or 'cells', got {dose_unit!r}")


def _code(key) -> str:
    """A DVID written as 1, 1.0, '1' or 'nTA' → one canonical text."""
    text = str(key).strip()
    try:
        x = float(text)
    except ValueError:
        return text
    return str(int(x)) if math.isfinite(x) and x.is_integer() else repr(x)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _normalise_id(text: str) -> str:
    """IDs are text; "12.0" (a spreadsheet's way of writing 12) becomes "12", "007" stays "007"."""
    text = text.strip()
    match = re.fullmatch(r"(-?\d+)\.0*", text)
    return match.group(1) if match else text


def _per_observable(value, label, model, dvid) -> dict[int, float]:
    """A number or {observable name or DVID code: number} → {observable index: number}."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        out = {}
        for key, v in value.items():
            name = dvid.get(_code(key), str(key))
            if name not in model.observables:
                raise CartkinError(f"{label}: " + unknown_name_message("observable", str(key), model.observables,
                                                                     model.name))
            out[model.observables.index(name)] = _limit_value(v, label)
        return out
    v = _limit_value(value, label)
    return {k: v for k in range(len(model.observables))}


def _limit_value(v, label) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise CartkinError(f"{label} must be a number, got {v!r}") from None
    if not (math.isfinite(x) and x >= 0):
        raise CartkinError(f"{label} must be a finite number >= 0, got {v!r}")
    return x


def _number(value, where, column) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _MISSING:
            return math.nan
        try:
            x = float(text)
        except ValueError:
            raise CartkinError(f"{where}: {column} = {text!r} is not a number") from None
    else:
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise CartkinError(f"{where}: {column} = {value!r} is not a number") from None
    if math.isinf(x):
        raise CartkinError(f"{where}: {column} = {value!r} is not a finite number")
    return x


def _find(name: str, header: Sequence[str]) -> int | None:
    """Index of `name` in header: exact match first, then case-insensitive."""
    if name in header:
        return header.index(name)
    low = [h.lower() for h in header]
    return low.index(name.lower()) if name.lower() in low else None


def _named_covariates(paths, column_map: Mapping[str, str], model: Model, given: Mapping[str, str]) -> dict:
    """Columns named exactly as a per-patient parameter of the model (covariate=True: WT, L0, nB0) that
    every file has and that are not mapped otherwise: covariates of that parameter, so a file with a WT
    column sets each subject's weight without --covariate. Kinetic parameters are never picked up."""
    taken = set(given) | set(given.values()) | set(column_map) | set(column_map.values())
    wanted = {q.name for q in model.parameter_info if q.covariate} - taken
    common = None
    for path in paths:
        if not path.is_file():
            return {}  # _read_rows reports it
        header = {h.strip() for h in _header(path)}
        common = header if common is None else common & header
    return {name: name for name in sorted((common or set()) & wanted) if name.upper() not in STANDARD}


def _header(path: Path) -> list[str]:
    """The first line of a CSV file, split."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except UnicodeDecodeError as exc:
        raise CartkinError(f"{path.name}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None


def _read_rows(path: Path, column_map: Mapping[str, str], covariates: Mapping[str, str]):
    if not path.exists():
        raise CartkinError(f"data file not found: {path}")
    if not path.is_file():
        raise CartkinError(f"data path is not a file: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise CartkinError(f"{path.name}: empty file (no header line)") from None
        if not any(header):
            raise CartkinError(f"{path.name}, line 1: empty header")
        names = list(header)
        for source, target in column_map.items():
            i = _find(str(source), header)
            if i is None:
                raise CartkinError(f"{path.name}: column_map names column {source!r}, which is not in the file "
                                   f"(columns: {', '.join(header)})")
            names[i] = str(target)
        names = [n.upper() if n.upper() in STANDARD else n for n in names]
        for n in set(names):
            if n and names.count(n) > 1:
                cols = [header[i] for i, m in enumerate(names) if m == n]
                raise CartkinError(f"{path.name}: columns {', '.join(repr(c) for c in cols)} all mean {n}")
        for required in ("ID", "TIME", "DV"):
            if required not in names:
                raise CartkinError(f"{path.name}: missing column {required} (columns: {', '.join(header)}; "
                                   f"map yours with column_map={{'yourname': '{required}'}}, "
                                   f"CLI --map yourname={required})")
        wanted = {n: i for i, n in enumerate(names) if n in STANDARD}
        labels = {n: (header[i] if header[i] == n else f"{n} (column {header[i]})") for n, i in wanted.items()}
        cov_index = {}
        for column in covariates:
            i = _find(str(column), [n if n not in STANDARD else "" for n in names])
            if i is None:
                raise CartkinError(f"{path.name}: missing covariate column {column!r} (columns: {', '.join(header)})")
            cov_index[column] = i
        n_rows = 0
        for values in reader:
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            where = f"{path.name} line {line}"
            if len(values) != len(names):
                raise CartkinError(f"{where}: {len(values)} fields, the header has {len(names)}")
            sid = values[wanted["ID"]].strip()
            if not sid:
                raise CartkinError(f"{where}: empty ID")
            sid = _normalise_id(sid)
            where = f"subject {sid}, {where}"
            row = {"_where": where, "_at": f"line {line}", "_cols": labels, "ID": sid}
            for name, i in wanted.items():
                if name == "ID":
                    continue
                text = values[i].strip()
                if name == "DVID" and text.lower() not in _MISSING:
                    row[name] = _code(text)  # a number or an observable name
                    continue
                row[name] = _number(text, where, labels[name])
            for column, i in cov_index.items():
                row[column] = _number(values[i], where, header[i])
            n_rows += 1
            yield row
        if n_rows == 0:
            raise CartkinError(f"{path.name}: no data rows")


# --- building subjects --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rules:
    model: Model
    dvid: Mapping[str, str]
    covariates: Mapping[str, str]          # column -> parameter
    lloq: Mapping[int, float]
    floor: Mapping[int, float]
    dose_unit: str
    baseline: str
    positive: bool


def _col(row, name) -> str:
    """The column as the user wrote it: TIME, or "TIME (column time)" when it was renamed."""
    return row.get("_cols", {}).get(name, name)


def _flag(row, name, where, allowed) -> int:
    v = row.get(name, math.nan)
    if isinstance(v, float) and math.isnan(v):
        return 0
    if v not in allowed:
        raise CartkinError(f"{where}: {_col(row, name)} = {v:g} is not one of "
                           f"{', '.join(str(a) for a in allowed)}")
    return int(v)


def _observable(row, rules: _Rules, where) -> int:
    model = rules.model
    code = row.get("DVID")
    if code is None or (isinstance(code, float) and math.isnan(code)):
        if len(model.observables) == 1:
            return 0
        if "DVID" in row:
            raise CartkinError(f"{where}: DVID is empty")
        raise CartkinError(f"{where}: no DVID column, and model {model.name} has several observables "
                           f"({', '.join(model.observables)})")
    name = rules.dvid.get(code, code)
    if name in model.observables:
        return model.observables.index(name)
    if _is_number(code):
        mapped = ", ".join(f"{k} -> {v}" for k, v in rules.dvid.items()) or "nothing"
        raise CartkinError(f"{where}: unknown DVID {code!r} (dvid_map maps {mapped}; observables of model "
                           f"{model.name}: {', '.join(model.observables)})")
    import difflib
    close = [o for o in model.observables if o.lower() == code.lower()] or \
        difflib.get_close_matches(code, list(model.observables), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise CartkinError(f"{where}: unknown DVID {code!r}, not an observable of model {model.name} ({hint}observables: "
                       f"{', '.join(model.observables)})")


def _build_subject(sid, rows, rules: _Rules, source: str, regimen: Regimen | None):
    model = rules.model
    label = f"{source}, subject {sid}"
    # covariates: constant within the subject, within the parameter's bounds
    cov_values = {}
    for column, parameter in rules.covariates.items():
        seen = {}
        for r in rows:
            v = r.get(column, math.nan)
            if not math.isnan(v):
                seen.setdefault(v, r["_at"])
        if not seen:
            raise CartkinError(f"{label}: covariate {column} is empty on every row")
        if len(seen) > 1:
            (v1, w1), (v2, w2) = list(seen.items())[:2]
            raise CartkinError(f"{label}: covariate {column} must have one value per subject, got {v1:g} "
                               f"({w1}) and {v2:g} ({w2})")
        value = next(iter(seen))
        info = model.parameter(parameter)
        if not info.lower <= value <= info.upper:
            raise CartkinError(f"{label}: covariate {column} = {value:g} is outside the bounds of {parameter} "
                               f"[{info.lower:g}, {info.upper:g}]")
        cov_values[parameter] = value
    # dose records
    infusions = []
    obs_rows = []
    for r in rows:
        where = r["_where"]
        t = r["TIME"]
        if math.isnan(t):
            raise CartkinError(f"{where}: {_col(r, 'TIME')} is missing")
        if t < 0:
            raise CartkinError(f"{where}: negative {_col(r, 'TIME')} {t:g} (day 0 is the first infusion)")
        amt = r.get("AMT", math.nan)
        if not math.isnan(amt) and amt < 0:
            raise CartkinError(f"{where}: negative {_col(r, 'AMT')} {amt:g} (a dose needs AMT >= 0)")
        if "EVID" in r:
            evid = _flag(r, "EVID", where, (0, 1, 2))
        else:
            evid = 1 if (not math.isnan(amt) and amt > 0) else 0
        if evid == 1:
            if math.isnan(amt):
                raise CartkinError(f"{where}: a dose record (EVID 1) needs AMT >= 0, {_col(r, 'AMT')} is missing")
            infusions.append(Infusion(t, dose_per_kg=amt) if rules.dose_unit == "per_kg" else Infusion(t, cells=amt))
            continue
        if evid == 2 or _flag(r, "MDV", where, (0, 1)) == 1:
            continue
        obs_rows.append(r)
    if regimen is None and infusions:
        regimen = Regimen(infusions)
    first_dose = min((d.time for d in regimen), default=0.0) if regimen is not None else 0.0
    # observations
    obs, excluded = [], []
    last_time: dict[int, tuple[float, str]] = {}
    for r in obs_rows:
        where = r["_where"]
        t = r["TIME"]
        code = r.get("DVID")
        if isinstance(code, str) and rules.dvid.get(code) == SKIP:
            excluded.append((sid, t, f"DVID {code}", "skipped DVID", where))
            continue
        k = _observable(r, rules, where)
        name = model.observables[k]
        if k in last_time and t < last_time[k][0]:
            raise CartkinError(f"{where}: {_col(r, 'TIME')} {t:g} is before the previous {name} time "
                               f"{last_time[k][0]:g} (sort by time within each subject and observable)")
        last_time[k] = (t, where)
        dv = r["DV"]
        if math.isnan(dv):
            raise CartkinError(f"{where}: {_col(r, 'DV')} is missing in an observation row (set MDV = 1 to skip it)")
        censored = _flag(r, "CENS", where, (0, 1)) == 1
        if censored:
            limit = r.get("LLOQ_LIMIT", dv)
        else:
            limit = math.nan
        if t <= first_dose and rules.baseline == "drop":
            excluded.append((sid, t, name, "baseline", where))
            continue
        if t <= first_dose and rules.baseline == "zeros" and dv == 0 and not censored:
            excluded.append((sid, t, name, "pre-dose zero", where))
            continue
        row_lloq = r.get("LLOQ", math.nan)
        if not math.isnan(row_lloq) and row_lloq < 0:
            raise CartkinError(f"{where}: negative {_col(r, 'LLOQ')} {row_lloq:g}")
        if rules.positive and not censored and dv < 0:
            # a negative measurement is a data error, not a value below a limit: censoring would hide it
            raise CartkinError(f"{where}: {_col(r, 'DV')} = {dv:g} is negative; a measurement cannot be below zero "
                               f"(fix the value, or pass positive=False for additive-error data)")
        if not censored and not math.isnan(row_lloq) and dv < row_lloq:
            censored, limit = True, row_lloq
        if not censored and math.isnan(row_lloq) and k in rules.lloq and dv < rules.lloq[k]:
            censored, limit = True, rules.lloq[k]
        if not censored and k in rules.floor and dv <= rules.floor[k]:
            censored, limit = True, rules.floor[k]
        if rules.positive:
            if censored and not limit > 0:
                raise CartkinError(f"{where}: censoring limit {limit:g} must be > 0 for a log-scale "
                                   f"error model (or pass positive=False)")
            if not censored and dv <= 0:
                raise CartkinError(f"{where}: {_col(r, 'DV')} = {dv:g} must be > 0 for a log-scale error model; "
                                   f"mark it "
                                   f"censored (CENS = 1, lloq=, censor_floor=) or pass positive=False")
        obs.append((t, k, dv, censored, limit))
    if not obs:
        extra = f" ({len(excluded)} baseline rows dropped)" if excluded else ""
        raise CartkinError(f"{label}: no observations{extra}")
    obs.sort(key=lambda o: (o[0], o[1]))
    t_, k_, v_, c_, l_ = zip(*obs)
    subject = Subject(sid, np.array(t_), np.array(v_), np.array(k_, dtype=np.int64), np.array(c_, dtype=bool),
                      np.array(l_), cov_values, regimen)
    return subject, excluded
