"""`liu2022`: leukaemia / activated / non-activated CAR T (Liu L. et al., J Immunother Cancer 2022).

Fitted by its authors to the B-ALL patients in ../shared/data/liu2022. The infused cells are the
initial value nTN0 (the model's dose); nB0 is the per-patient baseline burden.
"""
from ..definition import Model, Observable, Parameter, State, symbols

nB, nTA, nTN = symbols("nB nTA nTN")
rBp, rTA0, lTA0, lTN, nMB, eBp, ka, KBp, KBpr, KBpTN, nB0, nTN0 = symbols(
    "rBp rTA0 lTA0 lTN nMB eBp ka KBp KBpr KBpTN nB0 nTN0")

P = Parameter
model = Model(
    name="liu2022",
    description="Leukaemia and activated / non-activated CAR T cells (Liu 2022)",
    states=(State("nB", "model units", "CD19+ leukaemic cells", nonnegative=True),
            State("nTA", "cells/µL", "activated CAR T cells", nonnegative=True),
            State("nTN", "cells/µL", "non-activated CAR T cells", nonnegative=True)),
    parameter_info=(
        P("rBp", 0.069, "1/d", "leukaemia growth rate", "Liu 2022"),
        P("rTA0", 1.62, "1/d", "antigen-driven CAR T expansion", "Liu 2022"),
        P("lTA0", 0.12, "1/d", "activated CAR T death", "Liu 2022"),
        P("lTN", 3e-5, "1/d", "non-activated CAR T loss", "Liu 2022"),
        P("nMB", 2939.1, "model units", "leukaemia carrying capacity", "Liu 2022"),
        P("eBp", 22.72, "1/d", "maximal killing", "Liu 2022"),
        P("ka", 0.65, "1/d", "activation of infused cells", "Liu 2022"),
        P("KBp", 5891.45, "model units", "half-saturation of killing", "Liu 2022"),
        P("KBpr", 637.64, "model units", "half-saturation of expansion", "Liu 2022"),
        P("KBpTN", 1808.02, "model units", "half-saturation of activation", "Liu 2022"),
        P("nB0", 2200.24, "model units", "baseline leukaemic burden", "per patient", covariate=True),
        P("nTN0", 16.46, "cells/µL", "infused (non-activated) CAR T cells", "Liu 2022 (acts as the dose)"),
    ),
    equations={
        "nB": rBp * nB * (1 - nB / nMB) - eBp * nB / (nB + KBp) * nTA,
        "nTA": rTA0 * nB / (nB + KBpr) * nTA + ka * nB / (nB + KBpTN) * nTN - lTA0 * nTA,
        "nTN": -ka * nB / (nB + KBpTN) * nTN - lTN * nTN,
    },
    initial={"nB": nB0, "nTN": nTN0},
    observable_info=(
        Observable("nTA", nTA, "cells/µL", "activated CAR T cells"),
        Observable("nB", nB, "model units", "CD19+ leukaemic cells"),
        Observable("LB", 97.19 * nB / (nB + 1909), "%", "marrow blast percentage"),
    ),
    default_fit=("rTA0", "lTA0", "eBp", "ka", "nTN0"),
)
