"""Files of a calibration (`cartkin calibrate`): targets.csv, estimates.csv, calibrated.toml,
calibrated_draws.csv, profile.csv (with a profile), summary.txt and calibration.png."""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

DRAWS = "calibrated_draws.csv"


def _number(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


def write_calibration(result, outdir: Path) -> list[Path]:
    files = [outdir / "targets.csv", outdir / "estimates.csv", outdir / "calibrated.toml", outdir / DRAWS,
             outdir / "summary.txt"]
    with open(files[0], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["target", "arms", "statistic", "source", "n", "observed", "observed_low", "observed_high",
                    "simulated", "simulated_low", "simulated_high", "n_simulated", "z", "p", "inside"])
        for r in result.rows:
            t = r.target
            w.writerow([t.label or t.statistic, "; ".join(t.arms), t.statistic, t.source, _number(t.n),
                        _number(t.value), _number(r.observed_low), _number(r.observed_high), _number(r.simulated),
                        _number(r.simulated_low), _number(r.simulated_high), _number(r.n_simulated), _number(r.z),
                        _number(r.p), "yes" if r.inside else "no"])
    ess = ", ".join(f"{e:.0f}" for e in result.ess)
    with open(files[1], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["parameter", "quantity", "start", "estimate", "se_log", "low_95", "high_95", "at_bound",
                    "ess_per_arm", "converged", "reason"])
        for e in result.estimates:
            w.writerow([e.parameter, e.quantity, _number(e.start), _number(e.value), _number(e.se_log),
                        _number(e.low), _number(e.high), "yes" if e.at_bound else "no", ess,
                        "yes" if result.converged else "no", result.reason])
    data = json.loads(json.dumps(result.scenario_data))  # a deep copy
    if result.draws:
        data.setdefault("population", {})["uncertainty"] = {"draws": DRAWS}
    header = [f"cartkin calibrate: {result.targets.name} ({Path(result.targets.path).name})",
              f"{'converged' if result.converged else 'NOT converged'}: {result.reason}",
              "Run it: cartkin compare calibrated.toml -o results/"]
    files[2].write_text(to_toml(data, header), encoding="utf-8")
    names = list(result.draws[0]) if result.draws else []
    with open(files[3], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for d in result.draws:
            w.writerow([repr(float(d[k])) for k in names])
    files[4].write_text(result.summary_text() + "\n", encoding="utf-8")
    if result.profile:
        path = outdir / "profile.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            keys = list(result.profile[0])
            w.writerow(keys)
            for row in result.profile:
                w.writerow([_number(row[k]) for k in keys])
        files.append(path)
    return files


# ---- TOML ----------------------------------------------------------------------------------------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _table_lines(path: str, table: Mapping, depth: int, array: bool = False) -> list[str]:
    """[path] (or [[path]]): scalars, lists and inline tables; mappings at depth < 2 outside arrays of tables
    become sub-tables ([population.variability]), lists of mappings arrays of tables ([[arms.infusions]])."""
    def nested(v) -> bool:
        return (isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)) or \
            (isinstance(v, Mapping) and depth < 2 and not array)
    lines = [f"[[{path}]]" if array else f"[{path}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items() if not nested(v)]
    for k, v in table.items():
        if not nested(v):
            continue
        sub = f"{path}.{_key(k)}"
        if isinstance(v, list):
            for item in v:
                lines += [""] + _table_lines(sub, item, depth + 1, array=True)
        else:
            lines += [""] + _table_lines(sub, v, depth + 1)
    return lines


def to_toml(data: Mapping, comments=()) -> str:
    """TOML text of scenario data (tables, arrays of tables, inline tables of small mappings)."""
    lines = [f"# {c}" for c in comments]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, (Mapping, list))]
    for k, v in data.items():
        if isinstance(v, list) and all(isinstance(x, Mapping) for x in v):
            for item in v:
                lines += [""] + _table_lines(_key(k), item, 1, array=True)
        elif isinstance(v, Mapping):
            lines += [""] + _table_lines(_key(k), v, 1)
        elif isinstance(v, list):
            lines.insert(len(comments), f"{_key(k)} = {_value(v)}")
    return "\n".join(lines) + "\n"


# ---- figure --------------------------------------------------------------------------------------------

def calibration_figure(result, path: Path) -> Path:
    """One row per target: the observed value with its 95% interval (grey) and the calibrated population's
    simulated value with its Monte-Carlo 95% interval (blue inside the observed interval, red outside);
    percentages on a 0-100 axis, other statistics on a log axis in their unit."""
    from .plots import _save, plt
    from matplotlib import ticker
    rows = result.rows
    several = len(result.targets.arms) > 1
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 0.62 * len(rows) + 1.0), squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        t = r.target
        ax.plot([r.observed_low, r.observed_high], [1, 1], color="0.35", lw=3, solid_capstyle="butt")
        ax.plot([t.value], [1], "o", color="0.1", ms=5)
        if math.isfinite(r.simulated):
            colour = "tab:blue" if r.inside else "tab:red"
            ax.plot([r.simulated_low, r.simulated_high], [0, 0], color=colour, lw=2)
            ax.plot([r.simulated], [0], "D", color=colour, ms=5)
        if t.kind == "pct":
            ax.set_xlim(-2, 102)
        else:
            values = [v for v in (r.observed_low, r.observed_high, r.simulated_low, r.simulated_high, t.value)
                      if math.isfinite(v) and v > 0]
            ax.set_xscale("log")
            ax.set_xlim(min(values) / 1.3, max(values) * 1.3)
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.FuncFormatter(
                lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))
        ax.set_ylim(-0.8, 1.8)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7)
        label = (t.label or t.statistic)[:80] + (f" ({', '.join(t.arms)})" if several else "")
        ax.set_title(label + ("" if t.kind == "pct" else f" [{t.kind}]"), fontsize=7, loc="left", pad=2)
    fig.suptitle(f"{result.targets.name}: {'converged' if result.converged else 'not converged'}; grey observed "
                 f"(95%), blue/red simulated (Monte-Carlo 95%; red: outside the observed interval)", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
