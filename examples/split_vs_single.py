"""Compare a split-dose regimen with a single infusion on the same virtual patients, in Python.

    python examples/split_vs_single.py        # prints the summary, writes split_vs_single/*.png
"""
import dataclasses
from pathlib import Path

import cartkin
from cartkin.scenario import Arm

base = cartkin.default_scenario()  # the META 10-19 population, outcomes and horizon
arms = (
    Arm("IL-10 single 0.2e6/kg", cartkin.Regimen.single(dose_per_kg=0.2e6), {"armored": 1}),
    Arm("IL-10 split 10/30/60% of 0.2e6/kg", cartkin.Regimen.split(total_per_kg=0.2e6, fractions=(0.1, 0.3, 0.6),
                                                                   days=(0, 1, 2)), {"armored": 1}),
    Arm("Conventional split 10/30/60% of 1e6/kg", cartkin.Regimen.split(total_per_kg=1e6), {"armored": 0}),
)
scenario = dataclasses.replace(base, name="Split vs single infusion", arms=arms, trial=None,  # no replicates
                               population=dataclasses.replace(base.population, n=500))
result = cartkin.compare(scenario)
print(result.summary)
outdir = Path(__file__).with_suffix("")
for path in cartkin.plot(result, outdir):
    print("figure ->", path)
