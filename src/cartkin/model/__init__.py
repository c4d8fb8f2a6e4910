"""Model definition: the symbolic layer everything else is generated from."""
from .definition import DoseInput, Model, Observable, Parameter, State, symbols, t
from .export import to_sbml
from .registry import list_models, load_model

__all__ = ["DoseInput", "Model", "Observable", "Parameter", "State", "symbols", "t",
           "list_models", "load_model", "to_sbml"]
