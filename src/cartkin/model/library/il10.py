"""`il10`: mechanistic CAR T kinetics with IL-10-modulated persistence (cartkin's flagship model).

Nine states: infused (N), effector (E), memory (M) and exhausted (X) CAR T cells, CD19+ (L) and
CD19-negative (L_neg) leukaemic cells, normal B cells (B), plasma IL-10 (I) and IL-6 (C).
`armored = 0` gives a conventional CAR T product. Equations and the original defaults are those of
../shared/MODEL.md, with these changes (each parameter's unit and source is in its `Parameter`):

- CD19-negative subclone: L_neg grows like the leukaemia (r_L, logistic on the total L + L_neg) but is
  neither killed by CAR T nor part of the antigen load A = L + B. L(0) = L0 (1 - f_neg),
  L_neg(0) = L0 f_neg. blast_pct counts L + L_neg; blast_cd19neg_pct is its CD19-negative part.
  (The state L_neg is kept in cells/L, 10^6 x cells/µL, so that the solver controls the relative
  accuracy of this tiny, exponentially growing state; here it is written in cells/µL.)
      dL/dt     = r_L L (1 - (L + L_neg)/L_max) - kL
      dL_neg/dt = r_L L_neg (1 - (L + L_neg)/L_max)
- Memory CAR T kill too, at phi_M times the effector rate (they keep B cells aplastic while they persist):
      kL = kappa (E + phi_M M) L / (A + K_k),   kB = kappa (E + phi_M M) B / (A + K_k)
- B cells: the equation dB/dt = delta_B (B0 - B) - kB is unchanged, but delta_B now reads as slow
  regeneration from the marrow (production delta_B B0): B cells return over months once CAR T are gone.
- IL-6 on a clinical scale, with a saturating source: dC/dt = q_C k/(1 + k/K_C) (1 - e_C m)
  - k_C (C - C_base), k = kL + kB the cells killed per µL per day; q_C re-sourced (tens of pg/mL for small
  burdens, hundreds to ~1000 at high burden); K_C = 1e6 (default) is MODEL.md's linear release.
- Autocrine IL-10: m = auto + (1 - auto) I/(I + EC50_I), auto = armored m_auto. A secreting cell feels
  its own IL-10 from the first day (Zhao 2024: the effect is cell-intrinsic), while plasma IL-10 from a
  low dose stays far below EC50_I for a week; m_auto = 0 is MODEL.md's model.
- L_max 1e5 instead of 5000, so that marrow blasts of 70–95% (ELIANA's patients) can be represented.
- First-pass defaults (K_A, k_mem, k_exh, delta_M, kappa, K_k, delta_B, q_I, q_C) tuned to the
  tisagenlecleucel label kinetics and ELIANA outcomes; the formal calibration is still to come.
"""
import sympy as sp

from ..definition import DoseInput, Model, Observable, Parameter, State, symbols, t

N, E, M, X, L, L_neg, B, I, C = symbols("N E M X L L_neg B I C")
(f_blood, k_act, delta_N, rho, K_A, k_mem, k_react, k_exh, delta_E, delta_M, delta_X, A_LD, k_LD,
 kappa, K_k, r_L, L_max, L0, B0, delta_B, armored, q_I, k_I, I_base, EC50_I, e_rho, e_mem, e_exh,
 e_C, q_C, k_C, C_base, c_copies, WT, f_neg, phi_M, m_auto, K_C) = symbols(
    "f_blood k_act delta_N rho K_A k_mem k_react k_exh delta_E delta_M delta_X A_LD k_LD kappa K_k "
    "r_L L_max L0 B0 delta_B armored q_I k_I I_base EC50_I e_rho e_mem e_exh e_C q_C k_C C_base "
    "c_copies WT f_neg phi_M m_auto K_C")

PER_L = sp.Rational(1, 10**6)              # cells/L -> cells/µL
L_neg_uL = L_neg * PER_L                   # CD19- cells in cells/µL (the state is in cells/L, see below)
L_all = L + L_neg_uL                       # all leukaemic cells (CD19+ and CD19-), cells/µL
A = L + B                                  # CD19 antigen load (CD19- blasts are invisible to CAR T)
a = A / (A + K_A)                          # antigen-driven stimulation, 0..1
auto = armored * m_auto                    # autocrine part: IL-10 acting on the cells that secrete it
m = auto + (1 - auto) * I / (I + EC50_I)   # IL-10 effect, 0..1 (plasma IL-10 acts on every CAR T cell)
ld = 1 + A_LD * sp.exp(-k_LD * t)          # lymphodepletion boost
killers = E + phi_M * M                    # effectors, and memory cells at a reduced rate
kL = kappa * killers * L / (A + K_k)       # killing of CD19+ leukaemic cells
kB = kappa * killers * B / (A + K_k)       # killing of normal B cells
killing = kL + kB                          # CD19+ cells killed per µL per day
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
    P("K_A", 400.0, "cells/µL", "antigen half-stimulation", "assumption, first-pass tuning: normal B "
      "cells alone (B0) cannot hold CAR T in a proliferating plateau, low burdens still expand"),
    P("k_mem", 0.02, "1/d", "effector to memory", "assumption, first-pass tuning (Tlast ~170 d, "
      "tisagenlecleucel label)"),
    P("k_react", 0.02, "1/d", "memory re-activation", "assumption"),
    P("k_exh", 0.5, "1/d", "exhaustion (antigen-driven)", "assumption, first-pass tuning: high burden "
      "exhausts effectors before clearance (non-response ~20%, ELIANA 81% response)"),
    P("delta_E", 0.16, "1/d", "effector death", "Stein 2019 alpha 0.16/d"),
    P("delta_M", 0.02, "1/d", "memory death", "assumption, first-pass tuning: contraction half-life of "
      "weeks and Tlast ~170 d (label t1/2 21.7 d, Tlast 170 d); Stein 2019 beta 0.0032/d is the "
      "long-term tail of a minority"),
    P("delta_X", 0.4, "1/d", "exhausted-cell death", "assumption"),
    P("A_LD", 1.0, "-", "lymphodepletion boost at day 0 (0 = none)", "assumption"),
    P("k_LD", 0.15, "1/d", "decay of the lymphodepletion boost", "assumption"),
    P("kappa", 60.0, "1/d", "maximal kills per effector (blood-equivalent) per day", "assumption, "
      "first-pass tuning: lumps CAR T in marrow and tissue not counted in blood, so that a blood peak "
      "of ~16 cells/µL (label Cmax 32,700 copies/µg) clears a burden of ~1000 cells/µL"),
    P("K_k", 40.0, "cells/µL", "target half-saturation of killing", "assumption, first-pass tuning: "
      "killing stays efficient at low target levels, so few persisting CAR T keep B cells aplastic"),
    P("r_L", 0.07, "1/d", "leukaemia growth", "Liu 2022 rBp 0.069/d"),
    P("L_max", 1e5, "cells/µL", "leukaemia carrying capacity", "assumption, raised from MODEL.md's 5000: "
      "blast_pct = 97.19 L/(L + 1909) can then reach 95% (ELIANA median marrow blasts 74%, range 5–99%, is "
      "L = 6000 > 5000; Liu 2022 non-responders reach 50,385)"),
    P("L0", 1000.0, "cells/µL", "baseline leukaemic burden", "per patient", covariate=True),
    P("B0", 200.0, "cells/µL", "normal B cell level", "typical adult"),
    P("delta_B", 0.004, "1/d", "B cell regeneration from marrow (production delta_B*B0) and turnover",
      "assumption, first-pass tuning: B cells return over months once CAR T are gone"),
    P("armored", 1.0, "-", "1 = IL-10-secreting product, 0 = conventional", "design", upper=1.0),
    P("q_I", 15.0, "(pg/mL)/(cells/µL)/d", "IL-10 secretion per CAR T cell", "assumption: peak plasma "
      "IL-10 of tens of pg/mL (about EC50_I) at a blood CAR T peak of ~20 cells/µL"),
    P("k_I", 4.68, "1/d", "IL-10 elimination", "Hardiansyah & Ng 2019"),
    P("I_base", 2.0, "pg/mL", "baseline IL-10", "assumption"),
    P("EC50_I", 50.0, "pg/mL", "IL-10 half-effect", "assumption"),
    P("e_rho", 0.3, "-", "IL-10 boost of proliferation", "hypothesis"),
    P("e_mem", 3.0, "-", "IL-10 boost of memory formation", "hypothesis"),
    P("e_exh", 0.7, "-", "IL-10 reduction of exhaustion", "hypothesis", upper=1.0),
    P("e_C", 0.6, "-", "IL-10 reduction of IL-6 release", "hypothesis", upper=1.0),
    P("q_C", 1.0, "(pg/mL)/(cells/µL)", "IL-6 released per killed target cell/µL", "assumption, "
      "first-pass tuning: IL-6 peaks of ~100 pg/mL at L0 = 1000 and ~1000 pg/mL at high burden "
      "(Teachey 2016: tens–hundreds in mild, thousands in severe CRS)"),
    P("k_C", 3.96, "1/d", "IL-6 elimination", "Hardiansyah & Ng 2019"),
    P("C_base", 3.0, "pg/mL", "baseline IL-6", "assumption"),
    P("c_copies", 2000.0, "(copies/µg)/(cells/µL)", "qPCR copies per CAR T cell/µL", "Singh 2021 conversion; "
      "the ELIANA calibration gives ~1300 (the built-in scenarios use it)"),
    P("WT", 70.0, "kg", "body weight (converts flat doses to per-kg)", "per patient", covariate=True),
    P("f_neg", 1e-13, "-", "CD19-negative fraction of the baseline leukaemia", "assumption, first-pass "
      "tuning: an expected value (≲1 cell in 1e11–1e12 leukaemic cells), so that about a third of "
      "responders relapse CD19-negative within a year (ELIANA: 41% relapse by 12 months, 74% CD19-)",
      upper=1.0, covariate=True),
    P("m_auto", 0.5, "-", "autocrine IL-10 effect: the part of the effect an IL-10-secreting cell has from its "
      "own IL-10, whatever the plasma level (0 = plasma IL-10 only, MODEL.md)", "hypothesis from Zhao et al. "
      "2024, Nat Biotechnol, doi:10.1038/s41587-023-02060-8 (IL-10 CAR T cells: cell-intrinsic metabolic fitness, resisting "
      "dysfunction); 0.5 is an assumption, held fixed in the META 10-19 calibration (a fraction: see README)", upper=1.0),
    P("K_C", 1e6, "cells/µL/d", "kill rate of half-maximal IL-6 release (release saturates: the myeloid "
      "cells that make IL-6 have a finite capacity)", "assumption; the default is effectively linear (MODEL.md), "
      "calibrated values compress IL-6 peaks between low and high leukaemic burdens", lower=1.0),
    P("phi_M", 1.0, "-", "killing by memory CAR T relative to effectors", "assumption: persisting "
      "memory CAR T keep B cells aplastic (B-cell aplasia lasts as long as CAR T persist)", upper=1.0),
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
        # in cells/L (10^6 x cells/µL): the subclone starts far below the solver's absolute tolerance
        # in cells/µL, where its relative accuracy (and that of its exponential growth) is not controlled
        State("L_neg", "cells/L", "CD19-negative leukaemic cells (not seen or killed by CAR T)", nonnegative=True),
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
        "L": r_L * L * (1 - L_all / L_max) - kL,
        "L_neg": r_L * L_neg * (1 - L_all / L_max),
        "B": delta_B * (B0 - B) - kB,
        "I": armored * q_I * (E + M) - k_I * (I - I_base),
        "C": q_C * killing / (1 + killing / K_C) * (1 - e_C * m) - k_C * (C - C_base),
    },
    initial={"L": L0 * (1 - f_neg), "L_neg": L0 * f_neg / PER_L, "B": B0, "I": I_base, "C": C_base},
    observable_info=(
        Observable("car_blood", car_blood, "cells/µL", "CAR T cells in blood (N + E + M + X)"),
        Observable("car_copies", c_copies * car_blood, "copies/µg gDNA", "CAR transgene copies by qPCR"),
        Observable("blast_pct", 97.19 * L_all / (L_all + 1909), "%",
                   "marrow blast percentage, CD19+ and CD19- blasts (Liu 2022)"),
        Observable("blast_cd19neg_pct", 97.19 * L_neg_uL / (L_all + 1909), "%",
                   "CD19-negative part of blast_pct (blast_pct x L_neg / (L + L_neg))"),
        Observable("leukaemia", L, "cells/µL", "CD19+ leukaemic cells (Liu 2022's nB: the same blast "
                   "relation, so the same units)"),
        Observable("leukaemia_cd19neg", L_neg_uL, "cells/µL", "CD19-negative leukaemic cells"),
        Observable("b_cells", B, "cells/µL", "normal B cells"),
        Observable("il10", I, "pg/mL", "plasma IL-10"),
        Observable("il6", C, "pg/mL", "plasma IL-6"),
    ),
    dose=DoseInput(target="N", per_kg=f_blood / 70000, weight="WT"),
    default_fit=("rho", "kappa", "k_exh", "delta_E"),  # f_blood (the dose scale) is estimable too: --estimate
)
