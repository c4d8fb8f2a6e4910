"""Code generation: symbolic model → numba module (right-hand side, Jacobians, entry points)."""
from .generate import cache_dir, compile_model, generate_source, module_key

__all__ = ["cache_dir", "compile_model", "generate_source", "module_key"]
