"""The package's import graph has no circles: each module can be read (and moved) after the ones it uses.

Every import counts, at module level or inside a function, under TYPE_CHECKING or not: a lazy
import only hides a circle from the interpreter, not from the reader.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import glipcli

PACKAGE = Path(glipcli.__file__).parent


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``package`` (a package is its __init__)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (``from a import b`` counts ``a.b`` when that
    is a module, else ``a``); relative imports are resolved against the importing module."""
    modules = module_files(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        uses: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                uses.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in modules:
                        uses.add(target)
                    elif base in modules:
                        uses.add(base)
        uses.discard(name)
        graph[name] = uses
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules, the first repeated at the end), or None: a depth-first search."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once all it reaches is checked
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                return [*path[path.index(child) :], child]
            if child not in state and (cycle := visit(child)) is not None:
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_glipcli_has_no_import_circles():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_graph_covers_every_module():
    graph = import_graph(PACKAGE)
    assert {"glipcli.labelling.folder", "glipcli.io.images", "glipcli.cli"} <= set(graph)
    assert "glipcli.io.images" in graph["glipcli.labelling.records"]


def test_a_circle_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text("import pkg.d\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.d", "pkg.a"]
    (package / "d.py").write_text("import os\n")
    assert find_cycle(import_graph(package)) is None


@pytest.mark.parametrize("name", sorted(module_files(PACKAGE)))
def test_every_module_imports(name):
    """Each module imports on its own (an optional dependency missing here skips it)."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("glipcli", "tests"):
            raise
        pytest.skip(f"optional dependency {exc.name} not installed")
