"""How the calibrated built-in scenarios compare with the published reference figures of ../shared/MODEL.md.

    python examples/reference_figures.py [-n 1000]

The built-in `eliana` scenario's virtual patients (ELIANA-like children and young adults, ELIANA's
doses, conventional product) are read as car_copies (copies/µg gDNA, the calibrated conversion c_copies)
with a qPCR quantification limit of 50 copies/µg (an assumption, for Tlast and the half-life), beside the
tisagenlecleucel label figures for paediatric/young-adult B-ALL (responders / non-responders); the
built-in `meta10-19` IL-10 product at 0.1 x 10^6 cells/kg beside the META 10-19 response rate. Geometric
means for Cmax and AUC (as the label), medians for Tmax, half-life and Tlast.
"""
from __future__ import annotations

import argparse
import tomllib

import numpy as np

import cartkin
from cartkin.scenario.spec import builtin_text

LABEL = {  # MODEL.md "Reference figures": tisagenlecleucel label, qPCR
    "responders": {"cmax": 32_700, "tmax": 9.83, "auc_0_28": 300_000, "half_life": 21.7, "tlast": 170},
    "non-responders": {"cmax": 19_500, "tmax": 20.0, "auc_0_28": 210_000, "half_life": 2.70, "tlast": 28.8},
}
LLOQ = 50.0  # copies/µg gDNA (assumed)


def scenario(name: str, n: int, arms=None) -> cartkin.Scenario:
    data = tomllib.loads(builtin_text(name))
    data.pop("trial", None)  # the population only, no trial replicates
    data["population"]["n"] = n
    data["population"].pop("uncertainty", None)  # the point estimates (draws are for trial replicates)
    data["outcomes"]["exposure"] = {"observable": "car_copies", "limit": LLOQ}
    if arms is not None:
        data["arms"] = arms
    return cartkin.Scenario.from_dict(data)


def geometric_mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.mean(np.log(x)))) if x.size else float("nan")


def median(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def tlast(x: np.ndarray, horizon: float) -> str:
    """Median Tlast; '≥ horizon' when the median patient is still above the limit at the end."""
    m = median(x)
    return f"≥{horizon:.0f}" if m >= horizon else f"{m:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="virtual patients (default 1000)")
    args = parser.parse_args()
    conventional = cartkin.compare(scenario("eliana", args.n), progress=False).arms[0]
    il10 = cartkin.compare(scenario("meta10-19", args.n, [{"name": "IL-10 0.1e6/kg", "parameters": {"armored": 1},
                                                           "regimen": {"dose_per_kg": 0.1e6}}]), progress=False).arms[0]
    o = conventional.outcomes
    responded = o["response"] == 1
    horizon = float(conventional.times[-1])
    print(f"built-in eliana (calibrated), conventional product at ELIANA's doses, {args.n} virtual patients; exposure "
          f"car_copies, LLOQ {LLOQ:g} copies/µg\n")
    print("| group | N | Cmax copies/µg | Tmax d | AUC0–28 copies/µg·d | half-life d (to d84) | Tlast d |")
    print("|---|---|---|---|---|---|---|")
    for group, label in (("responders", responded), ("non-responders", ~responded & conventional.ok)):
        ref = LABEL[group]
        print(f"| label, {group} | {80 if group == 'responders' else 11} | {ref['cmax']:,} | {ref['tmax']} | "
              f"{ref['auc_0_28']:,} | {ref['half_life']} | {ref['tlast']} |")
        if label.sum() == 0:
            print(f"| cartkin, {group} | 0 | – | – | – | – | – |")
            continue
        print(f"| cartkin, {group} | {int(label.sum())} | {geometric_mean(o['cmax'][label]):,.0f} | "
              f"{median(o['tmax'][label]):.1f} | {geometric_mean(o['auc_0_28'][label]):,.0f} | "
              f"{median(o['half_life'][label]):.1f} | {tlast(o['tlast'][label], horizon)} |")
    rate = 100 * np.nanmean(il10.outcomes["response"][il10.ok])
    print(f"\nDay-28 response: eliana {100 * np.nanmean(o['response'][conventional.ok]):.1f}% "
          f"(label PK population: 80 of 91 responders); IL-10 0.1e6/kg {rate:.1f}% (META 10-19: 12/12).")


if __name__ == "__main__":
    main()
