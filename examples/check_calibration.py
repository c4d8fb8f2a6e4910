"""Check a comparison folder against published ranges (issue-style acceptance ranges for the built-ins).

    cartkin compare eliana -o eliana/ -n 1000 && python examples/check_calibration.py eliana/
    cartkin compare -o meta/ && python examples/check_calibration.py meta/

For each arm: day-28 response, relapse-free at day 365 among responders, responders' and non-responders'
geometric-mean Cmax and AUC0-28 (and their ratio), responders' median half-life and Tmax, B-cell aplasia at
day 182, CRS any and grade >= 3, read from summary.csv and patients.csv.
"""
from __future__ import annotations

import csv
import math
import statistics
import sys
from pathlib import Path


def number(text: str) -> float:
    return float(text) if text not in ("", "nan") else math.nan


def gmean(values) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


def main() -> None:
    folder = Path(sys.argv[1])
    with open(folder / "summary.csv", encoding="utf-8") as fh:
        summary = {row["arm"]: row for row in csv.DictReader(fh)}
    with open(folder / "patients.csv", encoding="utf-8") as fh:
        patients = [p for p in csv.DictReader(fh) if p["ok"] == "1"]
    for arm, row in summary.items():
        mine = [p for p in patients if p["arm"] == arm]
        responders = [p for p in mine if number(p["response"]) > 0.5]
        others = [p for p in mine if number(p["response"]) <= 0.5]
        free = [not (number(p["relapse_day"]) <= 365) for p in responders]
        values = lambda group, key: [number(p[key]) for p in group]  # noqa: E731
        c_r, c_n = gmean(values(responders, "cmax")), gmean(values(others, "cmax"))
        a_r, a_n = gmean(values(responders, "auc_0_28")), gmean(values(others, "auc_0_28"))
        half = statistics.median(v for v in values(responders, "half_life") if math.isfinite(v))
        tmax = statistics.median(v for v in values(responders, "tmax") if math.isfinite(v))
        print(f"{arm}: n {len(mine)}, response {row['response_pct']}%, relapse-free d365 among responders "
              f"{100 * sum(free) / max(len(free), 1):.1f}%, Cmax gmean R {c_r:.4g} / NR {c_n:.4g} (ratio {c_r / c_n:.2f}), "
              f"AUC0-28 R {a_r:.4g} / NR {a_n:.4g} (ratio {a_r / a_n:.2f}), responders' half-life {half:.1f} d, "
              f"Tmax {tmax:.2f} d, aplasia_182 {row.get('aplasia_182_pct', '–')}%, CRS any {row['crs_any_pct']}%, "
              f"grade >= 3 {row['crs_grade3plus_pct']}%, CD19- share of relapses {row.get('relapse_cd19neg_pct', '–')}%")


if __name__ == "__main__":
    main()
