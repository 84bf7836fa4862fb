"""No import cycles among the package's modules, counting imports inside functions too: a cycle hidden
in a function still means two modules that cannot be understood (or split) apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PKG = Path(__file__).resolve().parents[2] / "worldpm_scaling"


def module_name(path: Path, root: Path = PKG) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """module → the package modules it imports anywhere in its body (top level, functions, TYPE_CHECKING
    blocks excepted: those never run). `from a import b` counts `a.b` when b is a module, else `a`."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        skip = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and _type_checking(node.test)
            for stmt in node.body
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `import a.b.c` of a name inside a module: the module
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("worldpm_scaling"):
                    graph[mod].add(t)
    return graph


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None. A package's `__init__` importing its own submodules is
    not a cycle by itself; a submodule importing its parent package back is one."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def _without_parent_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop `pkg.mod → pkg` edges when pkg's __init__ is only re-exporting: `from . import x` inside
    a subpackage resolves to the package, which would make every re-exporting __init__ a cycle."""
    return {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(_without_parent_edges(import_graph()))
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "worldpm_scaling"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("from .b import f\n")
    (pkg / "data" / "b.py").write_text("def f():\n    from .a import g\n    return g\n")
    (pkg / "data" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import g\n")
    graph = import_graph(pkg)
    assert find_cycle(graph) == ["worldpm_scaling.data.a", "worldpm_scaling.data.b", "worldpm_scaling.data.a"]
    assert graph["worldpm_scaling.data.c"] == set()  # TYPE_CHECKING imports never run
