"""`stein2019`: empirical expansion / biphasic contraction (Stein et al., CPT PSP 2019).

Exponential expansion at rate ln(foldx)/Tmax until Tmax, then effector decline (alpha) with a memory
fraction FB contracting at beta. The switch at Tmax is a declared breakpoint: the solver stops there.
The model has no dose input: its initial state is Cmax/foldx.
"""
import sympy as sp

from ..definition import Model, Observable, Parameter, State, symbols, t

E, M = symbols("E M")
foldx, Tmax, Cmax, alpha, FB, beta = symbols("foldx Tmax Cmax alpha FB beta")
rho = sp.log(foldx) / Tmax
expanding = t < Tmax

P = Parameter
model = Model(
    name="stein2019",
    description="Empirical CAR T expansion and biphasic contraction (Stein 2019, tisagenlecleucel)",
    states=(State("E", "copies/µg", "expanding / effector transgene level", nonnegative=True),
            State("M", "copies/µg", "persisting (memory) transgene level", nonnegative=True)),
    parameter_info=(
        P("foldx", 3900.0, "-", "fold expansion from infusion to Cmax", "Stein 2019", lower=1.0),
        P("Tmax", 9.3, "d", "time of peak expansion", "Stein 2019", lower=1e-3),
        P("Cmax", 24000.0, "copies/µg", "peak transgene level", "Stein 2019"),
        P("alpha", 0.16, "1/d", "initial (effector) decline rate", "Stein 2019"),
        P("FB", 0.0079, "-", "fraction of the peak in the slow phase", "Stein 2019", upper=1.0),
        P("beta", 0.0032, "1/d", "persistence (memory) decline rate", "Stein 2019"),
    ),
    equations={
        "E": sp.Piecewise((rho * E, expanding), (-alpha * E, True)),
        "M": sp.Piecewise((sp.Integer(0), expanding), (FB * (alpha - beta) * E - beta * M, True)),
    },
    initial={"E": Cmax / foldx},
    observable_info=(Observable("C", E + M, "copies/µg", "transgene copies in blood (E + M)"),),
    breakpoints=(Tmax,),
    default_fit=("foldx", "Cmax", "alpha", "FB", "beta"),  # Tmax moves the breakpoint: fix it
)
