"""The package's import structure: data flows one way through the layers.

Every import statement of every module (at the top of the file or inside a function) is read from the
source with `ast`; nothing is imported. The test fails on a cycle between files, on a cycle between
top-level parts (`cartkin.model`, `cartkin.estimation`, ...), and on any import of a higher layer
from a lower one, naming the file and line.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cartkin"

#: lowest first; a part may import its own layer's parts and lower layers only
LAYERS = (
    ("errors", "progress", "table", "_version", "execution"),
    ("model",),
    ("solve",),
    ("codegen",),
    ("dosing",),
    ("metrics",),
    ("simulation",),
    ("population",),
    ("stats",),
    ("data",),
    ("estimation",),
    ("scenario",),
    ("calibration",),
    ("report",),
    ("cli",),
    ("__init__",),  # the package root re-exports the public names of every layer
)
RANK = {part: k for k, layer in enumerate(LAYERS) for part in layer}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(known: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import of a cartkin module."""
    edges = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from package import submodule` imports the submodule; other names come from `stem`
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
            for target in targets:
                while target and target not in known:  # `import cartkin.solve.status as st` etc.
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.append((name, target, node.lineno))
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


KNOWN = modules()
EDGES = imports(KNOWN)


def test_the_parser_sees_imports():
    # guards the test itself: these imports exist, so an empty or broken parse cannot pass silently
    found = {(a, b) for a, b, _ in EDGES}
    assert ("cartkin.cli", "cartkin.report") in found
    assert any(a.startswith("cartkin.estimation") and b == "cartkin.simulation.run" for a, b in found)
    assert all(part_of(m) in RANK for m in KNOWN), sorted({part_of(m) for m in KNOWN} - set(RANK))


def test_no_cycle_between_files():
    graph: dict[str, set[str]] = {}
    for a, b, _ in EDGES:
        graph.setdefault(a, set()).add(b)
    found = cycles(graph)
    assert not found, "import cycles between files: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_cycle_between_parts():
    graph: dict[str, set[str]] = {}
    for a, b, _ in EDGES:
        if part_of(a) != part_of(b):
            graph.setdefault(part_of(a), set()).add(part_of(b))
    found = cycles(graph)
    assert not found, "import cycles between parts: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_of_a_higher_layer():
    upward = [f"{KNOWN[a].relative_to(PACKAGE.parent)}:{line} imports {b} ({part_of(b)} is above {part_of(a)})"
              for a, b, line in EDGES if RANK[part_of(b)] > RANK[part_of(a)]]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("importer, source, expected", [
    ("cartkin.cli", "from . import report\n", "cartkin.report"),
    ("cartkin.cli", "from .report.output import x\n", "cartkin.report.output"),
    ("cartkin.simulation.run", "from ..solve import status as st\n", "cartkin.solve.status"),
    ("cartkin.simulation", "from .run import simulate\n", "cartkin.simulation.run"),
    ("cartkin.simulation.run", "def f():\n    import cartkin.solve.status\n", "cartkin.solve.status"),
])
def test_imports_resolve(tmp_path, importer, source, expected):
    # the resolver on a tiny package laid out like cartkin: relative, package and function-level imports
    layout = {"cartkin": "cartkin/__init__.py", "cartkin.cli": "cartkin/cli.py",
              "cartkin.report": "cartkin/report/__init__.py", "cartkin.report.output": "cartkin/report/output.py",
              "cartkin.simulation": "cartkin/simulation/__init__.py", "cartkin.simulation.run": "cartkin/simulation/run.py",
              "cartkin.solve": "cartkin/solve/__init__.py", "cartkin.solve.status": "cartkin/solve/status.py"}
    known = {}
    for name, rel in layout.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source if name == importer else "")
        known[name] = path
    assert [(a, b) for a, b, _ in imports(known)] == [(importer, expected)]
