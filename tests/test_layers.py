"""Layering: a lower layer never imports a higher one, at module level or inside a function."""
import ast
import pathlib

import pytest

import cartkin

ROOT = pathlib.Path(cartkin.__file__).parent

#: each layer and the cartkin modules it may import (besides itself)
ALLOWED = {
    "solve": {"errors", "_version"},
    "model": {"errors", "_version"},
    "codegen": {"errors", "_version", "model", "solve"},
    "dosing": {"errors", "_version", "model", "solve"},
    "simulation": {"errors", "_version", "model", "solve", "codegen", "dosing", "progress", "metrics"},
}


def cartkin_imports(path: pathlib.Path) -> set[str]:
    """First component under cartkin of every import in the file (absolute or relative)."""
    package = path.relative_to(ROOT).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
            found |= {n[1] if len(n) > 1 else "<root>" for n in names if n[0] == "cartkin"}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "cartkin":
                    continue
                parts = parts[1:]
            else:
                base = list(package[:len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
            if parts:
                found.add(parts[0])
            else:  # `from .. import x` at the package root
                found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_never_import_higher_ones(layer):
    target = ROOT / layer
    files = sorted(target.rglob("*.py")) if target.is_dir() else [ROOT / f"{layer}.py"]
    assert files
    for path in files:
        bad = cartkin_imports(path) - ALLOWED[layer] - {layer}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
