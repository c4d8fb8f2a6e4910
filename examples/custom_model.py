"""Define your own model once, symbolically, and simulate it like a built-in one.

A two-population CAR T model (effector E expanding on antigen, memory M) with tumour T, written with
sympy. cartkin generates the numba right-hand side, Jacobian and parameter Jacobian from it.

    python examples/custom_model.py            # writes custom_model.png next to this file
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import sympy as sp

import cartkin
from cartkin import DoseInput, Model, Observable, Parameter, State

E, M, T = sp.symbols("E M T")
rho, K, delta, k_m, delta_M, kill, r_T, T_max, f_blood, T0 = sp.symbols(
    "rho K delta k_m delta_M kill r_T T_max f_blood T0")

stimulation = T / (T + K)
model = Model(
    name="effector_memory",
    description="Effector/memory CAR T with a logistic tumour (example of a user-defined model)",
    states=(State("E", "cells/µL", "effector CAR T"), State("M", "cells/µL", "memory CAR T"),
            State("T", "cells/µL", "tumour cells")),
    parameter_info=(
        Parameter("rho", 0.9, "1/d", "maximal expansion rate"),
        Parameter("K", 100.0, "cells/µL", "tumour level for half-maximal expansion"),
        Parameter("delta", 0.2, "1/d", "effector death"),
        Parameter("k_m", 0.01, "1/d", "effector to memory"),
        Parameter("delta_M", 0.005, "1/d", "memory death"),
        Parameter("kill", 0.05, "µL/cell/d", "tumour killing per effector"),
        Parameter("r_T", 0.05, "1/d", "tumour growth"),
        Parameter("T_max", 5000.0, "cells/µL", "tumour carrying capacity"),
        Parameter("f_blood", 0.02, "-", "fraction of infused cells in blood"),
        Parameter("T0", 500.0, "cells/µL", "baseline tumour", covariate=True),
    ),
    equations={
        "E": rho * stimulation * E - delta * E - k_m * E,
        "M": k_m * E - delta_M * M,
        "T": r_T * T * (1 - T / T_max) - kill * E * T,
    },
    initial={"T": T0},
    observable_info=(Observable("car", E + M, "cells/µL", "CAR T cells in blood"),
                     Observable("T", T, "cells/µL", "tumour")),
    dose=DoseInput(target="E", per_kg=f_blood / 70000, weight=None),
)

times = np.linspace(0, 180, 361)
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for dose in (0.1e6, 0.2e6, 1e6):
    res = cartkin.simulate(model, cartkin.Regimen.single(dose_per_kg=dose), times)
    assert res.status.ok, res.status.message
    after = times > 0  # the day-0 sample is the pre-dose value (no CAR T yet)
    axes[0].plot(times[after], res.observable("car")[after], label=f"{dose:.1e} cells/kg")
    axes[1].plot(times, res.observable("T"), label=f"{dose:.1e} cells/kg")
    print(f"dose {dose:.1e}/kg: peak CAR T {res.observable('car').max():.1f} cells/µL on day "
          f"{times[res.observable('car').argmax()]:.1f}; tumour on day 28 {res.observable('T')[times == 28][0]:.3g}")
axes[0].set_title("CAR T cells in blood (E + M)")
axes[1].set_title("tumour cells")
for ax in axes:
    ax.set_yscale("log")
    ax.set_ylabel("cells/µL")
    ax.set_xlabel("days after infusion")
    ax.legend(fontsize=8)
fig.tight_layout()
out = Path(__file__).with_suffix(".png")
fig.savefig(out, dpi=120)
print(f"figure -> {out}")
