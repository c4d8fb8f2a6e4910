"""Built-in models by name."""
from __future__ import annotations

import importlib

from ..errors import CartkinError
from .definition import Model

_BUILTIN = ("il10", "stein2019", "liu2022")


def list_models() -> list[str]:
    """Names of the built-in models."""
    return list(_BUILTIN)


def load_model(name: str | Model) -> Model:
    """The built-in model called `name` (a Model passes through unchanged)."""
    if isinstance(name, Model):
        return name
    if name not in _BUILTIN:
        import difflib
        close = difflib.get_close_matches(str(name), _BUILTIN, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CartkinError(f"unknown model {name!r}{hint}; built-in models: {', '.join(_BUILTIN)}")
    model = importlib.import_module(f".library.{name}", __package__).model
    if "_origin" not in model.__dict__:  # pickles as its name (Model.__reduce__): not a field, not compared
        object.__setattr__(model, "_origin", (load_model, name))
    return model
