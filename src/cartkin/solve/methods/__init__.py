"""The integration methods, one module each, and the registry `METHODS` that names them.

Each method module defines `ORDER` and an `advance` template with the signature the driver calls
(see `cartkin.solve.driver.integrate`). `METHODS` maps a method's name to a `Method` record; solver
validation, code generation and the documentation all read it. "auto" is not a method but a driver
mode (`AUTO`): it starts with the explicit method `AUTO.explicit` and continues with the stiff method
`AUTO.stiff` once the explicit one reports stiffness.
"""
from __future__ import annotations

from typing import NamedTuple


class Method(NamedTuple):
    """One integration method: its module (under cartkin.solve.methods), order, stiffness, summary."""
    name: str
    module: str
    order: int
    stiff: bool
    description: str


class AutoMode(NamedTuple):
    """The "auto" driver mode: the explicit method first, the stiff one from the first stiffness report."""
    name: str
    explicit: str
    stiff: str
    description: str


METHODS: dict[str, Method] = {
    "dopri5": Method("dopri5", "cartkin.solve.methods.dopri5", 5, False,
                     "Dormand–Prince 5(4), explicit Runge–Kutta with 4th-order dense output and "
                     "stiffness detection"),
    "rodas": Method("rodas", "cartkin.solve.methods.rodas", 4, True,
                    "Rodas4, stiffly accurate Rosenbrock 4(3) with the model's analytic Jacobian"),
}

AUTO = AutoMode("auto", "dopri5", "rodas",
                "driver mode: dopri5 until it detects stiffness, then rodas for the rest of the subject")


def method_names() -> tuple[str, ...]:
    """Every name a `Solver` accepts: "auto" first, then the methods."""
    return (AUTO.name, *METHODS)
