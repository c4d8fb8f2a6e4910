"""`il10`: mechanistic CAR T kinetics with IL-10-modulated persistence (cartkin's flagship model).

Eight states: infused (N), effector (E), memory (M) and exhausted (X) CAR T cells, leukaemic cells (L),
normal B cells (B), plasma IL-10 (I) and IL-6 (C). `armored = 0` gives a conventional CAR T product.
Equations, defaults and sources are those of ../shared/MODEL.md.
"""
import sympy as sp

from ..definition import DoseInput, Model, Observable, Parameter, State, symbols, t

N, E, M, X, L, B, I, C = symbols("N E M X L B I C")
(f_blood, k_act, delta_N, rho, K_A, k_mem, k_react, k_exh, delta_E, delta_M, delta_X, A_LD, k_LD,
 kappa, K_k, r_L, L_max, L0, B0, delta_B, armored, q_I, k_I, I_base, EC50_I, e_rho, e_mem, e_exh,
 e_C, q_C, k_C, C_base, c_copies, WT) = symbols(
    "f_blood k_act delta_N rho K_A k_mem k_react k_exh delta_E delta_M delta_X A_LD k_LD kappa K_k "
    "r_L L_max L0 B0 delta_B armored q_I k_I I_base EC50_I e_rho e_mem e_exh e_C q_C k_C C_base "
    "c_copies WT")

A = L + B                                  # antigen load
a = A / (A + K_A)                          # antigen-driven stimulation, 0..1
m = I / (I + EC50_I)                       # IL-10 effect, 0..1
ld = 1 + A_LD * sp.exp(-k_LD * t)          # lymphodepletion boost
kL = kappa * E * L / (A + K_k)             # killing of leukaemic cells
kB = kappa * E * B / (A + K_k)             # killing of normal B cells
to_memory = k_mem * (1 - a) * (1 + e_mem * m) * E
exhaustion = k_exh * a * (1 - e_exh * m) * E
reactivation = k_react * a * M
activation = k_act * a * N

P = Parameter
parameters = (
    P("f_blood", 0.02, "-", "fraction of infused cells in blood-equivalent space", "assumption", upper=1.0),
    P("k_act", 0.8, "1/d", "activation of infused cells", "assumption"),
    P("delta_N", 0.3, "1/d", "loss of non-activated cells", "assumption"),
    P("rho", 1.0, "1/d", "maximal proliferation rate", "near Stein 2019 rho 0.889/d"),
    P("K_A", 200.0, "cells/µL", "antigen half-stimulation", "assumption"),
    P("k_mem", 0.0015, "1/d", "effector to memory", "assumption (memory fraction ~1%, Stein FB 0.0079)"),
    P("k_react", 0.02, "1/d", "memory re-activation", "assumption"),
    P("k_exh", 0.05, "1/d", "exhaustion", "assumption"),
    P("delta_E", 0.16, "1/d", "effector death", "Stein 2019 alpha 0.16/d"),
    P("delta_M", 0.0032, "1/d", "memory death", "Stein 2019 beta 0.0032/d"),
    P("delta_X", 0.4, "1/d", "exhausted-cell death", "assumption"),
    P("A_LD", 1.0, "-", "lymphodepletion boost at day 0 (0 = none)", "assumption"),
    P("k_LD", 0.15, "1/d", "decay of the lymphodepletion boost", "assumption"),
    P("kappa", 5.0, "1/d", "maximal kills per effector per day", "assumption"),
    P("K_k", 500.0, "cells/µL", "target half-saturation of killing", "assumption"),
    P("r_L", 0.07, "1/d", "leukaemia growth", "Liu 2022 rBp 0.069/d"),
    P("L_max", 5000.0, "cells/µL", "leukaemia carrying capacity", "assumption"),
    P("L0", 1000.0, "cells/µL", "baseline leukaemic burden", "per patient", covariate=True),
    P("B0", 200.0, "cells/µL", "normal B cell level", "typical adult"),
    P("delta_B", 0.03, "1/d", "B cell turnover", "assumption"),
    P("armored", 1.0, "-", "1 = IL-10-secreting product, 0 = conventional", "design", upper=1.0),
    P("q_I", 1.0, "(pg/mL)/(cells/µL)/d", "IL-10 secretion per CAR T cell", "assumption"),
    P("k_I", 4.68, "1/d", "IL-10 elimination", "Hardiansyah & Ng 2019"),
    P("I_base", 2.0, "pg/mL", "baseline IL-10", "assumption"),
    P("EC50_I", 50.0, "pg/mL", "IL-10 half-effect", "assumption"),
    P("e_rho", 0.3, "-", "IL-10 boost of proliferation", "hypothesis"),
    P("e_mem", 3.0, "-", "IL-10 boost of memory formation", "hypothesis"),
    P("e_exh", 0.7, "-", "IL-10 reduction of exhaustion", "hypothesis", upper=1.0),
    P("e_C", 0.6, "-", "IL-10 reduction of IL-6 release", "hypothesis", upper=1.0),
    P("q_C", 0.02, "(pg/mL)/kill", "IL-6 released per killed cell", "assumption"),
    P("k_C", 3.96, "1/d", "IL-6 elimination", "Hardiansyah & Ng 2019"),
    P("C_base", 3.0, "pg/mL", "baseline IL-6", "assumption"),
    P("c_copies", 2000.0, "(copies/µg)/(cells/µL)", "qPCR copies per CAR T cell/µL", "Singh 2021 conversion"),
    P("WT", 70.0, "kg", "body weight (converts flat doses to per-kg)", "per patient", covariate=True),
)

car_blood = N + E + M + X

model = Model(
    name="il10",
    description="Mechanistic CAR T kinetics with IL-10-modulated persistence, leukaemia, B cells, IL-10 and IL-6",
    states=(
        State("N", "cells/µL", "infused CAR T cells not yet activated", nonnegative=True),
        State("E", "cells/µL", "effector CAR T cells", nonnegative=True),
        State("M", "cells/µL", "memory CAR T cells", nonnegative=True),
        State("X", "cells/µL", "exhausted CAR T cells", nonnegative=True),
        State("L", "cells/µL", "CD19+ leukaemic cells", nonnegative=True),
        State("B", "cells/µL", "normal CD19+ B cells", nonnegative=True),
        State("I", "pg/mL", "plasma IL-10", nonnegative=True),
        State("C", "pg/mL", "plasma IL-6", nonnegative=True),
    ),
    parameter_info=parameters,
    equations={
        "N": -activation - delta_N * N,
        "E": activation + rho * a * ld * (1 + e_rho * m) * E - to_memory + reactivation - exhaustion - delta_E * E,
        "M": to_memory - reactivation - delta_M * M,
        "X": exhaustion - delta_X * X,
        "L": r_L * L * (1 - L / L_max) - kL,
        "B": delta_B * (B0 - B) - kB,
        "I": armored * q_I * (E + M) - k_I * (I - I_base),
        "C": q_C * (kL + kB) * (1 - e_C * m) - k_C * (C - C_base),
    },
    initial={"L": L0, "B": B0, "I": I_base, "C": C_base},
    observable_info=(
        Observable("car_blood", car_blood, "cells/µL", "CAR T cells in blood (N + E + M + X)"),
        Observable("car_copies", c_copies * car_blood, "copies/µg gDNA", "CAR transgene copies by qPCR"),
        Observable("blast_pct", 97.19 * L / (L + 1909), "%", "marrow blast percentage (Liu 2022)"),
        Observable("b_cells", B, "cells/µL", "normal B cells"),
        Observable("il10", I, "pg/mL", "plasma IL-10"),
        Observable("il6", C, "pg/mL", "plasma IL-6"),
    ),
    dose=DoseInput(target="N", per_kg=f_blood / 70000, weight="WT"),
    default_fit=("rho", "kappa", "k_exh", "delta_E"),  # f_blood scales the dose: not estimable yet
)
