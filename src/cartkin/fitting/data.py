"""NONMEM-style long data: one row per observation (or dose record), read and checked.

Columns (names case-insensitive; rename others with `column_map={"time": "TIME"}`):
ID, TIME, DV, DVID (an observable name, or a number mapped with `dvid_map={1: "nTA"}`), and optionally
MDV (1 = not an observation), EVID/AMT (EVID 1 rows are doses of AMT cells/kg, or flat cells with
dose_unit="cells"), CENS (1 = below the limit of quantification, DV holds the limit), LLOQ (a limit per
row), and covariate columns mapped to parameters with `covariates={"Reg": "nB0"}`.

Rules: rows of one subject and one DVID must be in time order (files may list each DVID in its own
block, as the Liu 2022 files do); observations at TIME 0 are baseline values (a pre-infusion zero, or the
burden given as a covariate) and are not fitted; `censor_floor` marks DV <= floor as censored at the floor;
`lloq` (a number, or per observable) censors DV < lloq at lloq.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..dosing import Infusion, Regimen
from ..errors import CartkinError
from ..model.definition import Model, unknown_name_message


@dataclass(frozen=True, eq=False)
class Subject:
    """One subject's observations (sorted by time), censoring, covariates and doses."""
    id: str
    times: np.ndarray
    values: np.ndarray
    observable_index: np.ndarray
    censored: np.ndarray
    limits: np.ndarray
    covariates: Mapping[str, float] = field(default_factory=dict)
    regimen: Regimen | None = None

    @property
    def n_observations(self) -> int:
        return int(self.times.size)


@dataclass(frozen=True, eq=False)
class Dataset:
    subjects: tuple[Subject, ...]
    observables: tuple[str, ...]  # the model's observables (observable_index points here)
    source: str = ""

    @property
    def n_observations(self) -> int:
        return sum(s.n_observations for s in self.subjects)

    @property
    def observables_used(self) -> tuple[str, ...]:
        used = sorted({int(i) for s in self.subjects for i in s.observable_index})
        return tuple(self.observables[i] for i in used)

    def summary(self) -> str:
        n_cens = sum(int(s.censored.sum()) for s in self.subjects)
        return (f"{len(self.subjects)} subjects, {self.n_observations} observations "
                f"({n_cens} censored) of {', '.join(self.observables_used)}")


STANDARD = ("ID", "TIME", "DV", "DVID", "MDV", "EVID", "AMT", "CENS", "LLOQ")


def read_data(paths: str | Path | Sequence[str | Path], model: Model,
              column_map: Mapping[str, str] | None = None, dvid_map: Mapping[int | str, str] | None = None,
              covariates: Mapping[str, str] | None = None, lloq: float | Mapping[str, float] | None = None,
              censor_floor: float | None = None, dose_unit: str = "per_kg") -> Dataset:
    """Read one or more CSV files into a Dataset for `model` (see the module docstring)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if dose_unit not in ("per_kg", "cells"):
        raise CartkinError(f"dose_unit must be 'per_kg' or 'cells', got {dose_unit!r}")
    covariates = dict(covariates or {})
    for column, parameter in covariates.items():
        model.parameter_index(parameter)
    dvid_map = {str(k): v for k, v in (dvid_map or {}).items()}
    for v in dvid_map.values():
        if v not in model.observables:
            raise CartkinError(unknown_name_message("observable", v, model.observables, model.name))
    if censor_floor is not None and not (math.isfinite(censor_floor) and censor_floor >= 0):
        raise CartkinError(f"censor_floor must be a number >= 0, got {censor_floor}")
    rows_by_id: dict[str, list[dict]] = {}
    id_source: dict[str, str] = {}
    for path in paths:
        for row in _read_rows(Path(path), column_map or {}, covariates):
            sid = row["ID"]
            if sid in id_source and id_source[sid] != row["_file"]:
                raise CartkinError(f"subject ID {sid} appears in both {id_source[sid]} and {row['_file']}; "
                                   f"renumber one file")
            id_source[sid] = row["_file"]
            rows_by_id.setdefault(sid, []).append(row)
    if not rows_by_id:
        raise CartkinError("the data hold no rows")
    subjects = tuple(_subject(sid, rows, model, dvid_map, covariates, lloq, censor_floor, dose_unit)
                     for sid, rows in rows_by_id.items())
    return Dataset(subjects, tuple(model.observables), ", ".join(str(p) for p in paths))


def _read_rows(path: Path, column_map: Mapping[str, str], covariates: Mapping[str, str]):
    if not path.is_file():
        raise CartkinError(f"data file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise CartkinError(f"{path}: empty file") from None
        header = [h.strip() for h in header]
        mapped = [column_map.get(h, h) for h in header]
        names = [m.upper() if m.upper() in STANDARD else m for m in mapped]
        for required in ("ID", "TIME", "DV"):
            if required not in names:
                raise CartkinError(f"{path}: missing column {required} (columns: {', '.join(header)}; "
                                   f"rename with --map yourname={required})")
        for column in covariates:
            if column not in names:
                raise CartkinError(f"{path}: missing covariate column {column!r}")
        for line, values in enumerate(reader, start=2):
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(names):
                raise CartkinError(f"{path}, line {line}: {len(values)} fields, header has {len(names)}")
            row = {"_file": path.name, "_line": line}
            for name, text in zip(names, values):
                text = text.strip()
                if name == "ID":
                    row["ID"] = text
                    continue
                if name in STANDARD or name in covariates:
                    if name == "DVID" and text and not _is_number(text):
                        row[name] = text  # an observable name
                        continue
                    if text == "" or text == ".":
                        row[name] = math.nan
                        continue
                    try:
                        row[name] = float(text)
                    except ValueError:
                        raise CartkinError(f"{path}, line {line}: {name} = {text!r} is not a number") from None
            if not row["ID"]:
                raise CartkinError(f"{path}, line {line}: empty ID")
            yield row


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _subject(sid, rows, model, dvid_map, covariates, lloq, censor_floor, dose_unit) -> Subject:
    where = f"{rows[0]['_file']}, subject {sid}"
    cov_values = {}
    for column, parameter in covariates.items():
        vals = {r[column] for r in rows if not math.isnan(r[column])}
        if len(vals) != 1:
            raise CartkinError(f"{where}: covariate {column} must have one value per subject, got {sorted(vals)}")
        cov_values[parameter] = vals.pop()
    infusions = []
    obs = []
    last_time: dict = {}
    for r in rows:
        line = f"{r['_file']}, line {r['_line']}"
        t = r["TIME"]
        if math.isnan(t):
            raise CartkinError(f"{line}: TIME is missing")
        if t < 0:
            raise CartkinError(f"{line}: negative TIME {t:g}")
        evid = r.get("EVID", 0.0)
        evid = 0.0 if math.isnan(evid) else evid
        if evid == 1:
            amt = r.get("AMT", math.nan)
            if math.isnan(amt) or amt < 0:
                raise CartkinError(f"{line}: a dose record (EVID 1) needs AMT >= 0, got {amt}")
            infusions.append(Infusion(t, dose_per_kg=amt) if dose_unit == "per_kg" else Infusion(t, cells=amt))
            continue
        if r.get("MDV", 0.0) == 1:
            continue
        dvid = r.get("DVID", None)
        if dvid is None:
            if len(model.observables) != 1:
                raise CartkinError(f"{line}: no DVID column, and model {model.name} has several observables")
            name = model.observables[0]
        else:
            key = dvid if isinstance(dvid, str) else (str(int(dvid)) if float(dvid).is_integer() else str(dvid))
            name = dvid_map.get(key, key)
            if name not in model.observables:
                hint = " (map numbers with --dvid 1=NAME)" if _is_number(key) else ""
                raise CartkinError(f"{line}: unknown DVID {key!r} for model {model.name}{hint}; observables: "
                                   f"{', '.join(model.observables)}")
        k = model.observables.index(name)
        if k in last_time and t < last_time[k]:
            raise CartkinError(f"{line}: TIME {t:g} is before the previous {name} time {last_time[k]:g} "
                               f"(sort by time within each subject)")
        last_time[k] = t
        dv = r["DV"]
        if math.isnan(dv):
            raise CartkinError(f"{line}: DV is missing (NaN) in an observation row; set MDV = 1 to skip it")
        if t == 0:
            continue  # baseline: the model starts from it (pre-infusion zero or a covariate), nothing to fit
        censored = r.get("CENS", 0.0) == 1
        limit = dv if censored else math.nan
        row_lloq = r.get("LLOQ", math.nan)
        level = lloq.get(name) if isinstance(lloq, Mapping) else lloq
        for bound in (row_lloq, level):
            if bound is not None and not math.isnan(bound) and not censored and dv < bound:
                censored, limit = True, bound
        if censor_floor is not None and not censored and dv <= censor_floor:
            censored, limit = True, censor_floor
        if not censored and dv <= 0:
            raise CartkinError(f"{line}: DV = {dv:g} must be > 0 for an uncensored observation "
                               f"(mark it CENS = 1 or give an LLOQ)")
        obs.append((t, dv, k, censored, limit))
    if not obs:
        raise CartkinError(f"{where}: no observations")
    obs.sort(key=lambda o: (o[0], o[2]))
    arr = list(zip(*obs))
    return Subject(id=sid, times=np.array(arr[0], float), values=np.array(arr[1], float),
                   observable_index=np.array(arr[2], np.int64), censored=np.array(arr[3], bool),
                   limits=np.array(arr[4], float), covariates=cov_values,
                   regimen=Regimen(infusions) if infusions else None)
