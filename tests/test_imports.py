"""No import cycles inside the package: read statically, no module imports (at module level) one that,
directly or not, imports it back.

The graph is built with ``ast`` over every module of the installed package (``onnxcompress`` and the
folders pyproject.toml maps into it). An edge is an import whose target module must be initialised for
the importing module to load: ``import a.b`` and ``from a import b`` (``b`` a submodule) point at
``a.b``; ``from a import name`` points at ``a``. Imports inside functions run when the function is
called, and imports under ``if TYPE_CHECKING:`` never run, so neither is an edge. A package's own
``__init__`` running before its submodules is not an edge either: a submodule needs its package to
exist, not to be initialised (what it takes from the package's namespace is an explicit edge).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"])
TOP = "onnxcompress"


@cache
def module_files() -> dict[str, Path]:
    """Every module of the installed package by dotted name, found where the install puts each package."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for folder in importlib.util.find_spec(package).submodule_search_locations:
            for path in Path(folder).rglob("*.py"):
                parts = path.relative_to(folder).with_suffix("").parts
                found[".".join((package, *parts[:-1], *([] if parts[-1] == "__init__" else parts[-1:])))] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module loads: not in a function, not under ``if TYPE_CHECKING``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from module_level_imports(ast.Module(body=[child], type_ignores=[]))
        else:
            yield from module_level_imports(node)


def _base(module: str, node: ast.ImportFrom) -> str:
    """The module a ``from`` import reads from, relative ones resolved against ``module``."""
    if not node.level:
        return node.module or ""
    package = module if module_files()[module].name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    anchor = ".".join(parts[: len(parts) - node.level + 1])
    return f"{anchor}.{node.module}" if node.module else anchor


def imported_modules(module: str) -> set[str]:
    """The package's modules that ``module`` needs initialised when it loads."""
    modules = module_files()
    targets: set[str] = set()
    for node in module_level_imports(ast.parse(modules[module].read_text(), str(modules[module]))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = _base(module, node)
        targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {t for t in targets if t in modules}


@cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level."""
    return {module: imported_modules(module) for module in module_files()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself), each
    as one closed import path through it (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = stack[stack.index(node):]
                    del stack[stack.index(node):]
                    if len(component) > 1 or node in graph[node]:
                        found.append(_closed_path(graph, set(component)))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself (breadth first)."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_the_graph_covers_the_package():
    """The walk finds the mapped packages' modules and their imports (a broken walk would find no cycle)."""
    graph = import_graph()
    assert {"onnxcompress", "onnxcompress.passes", "onnxcompress.calibration", "onnxcompress.cli"} <= set(graph)
    assert "onnxcompress.passes.base" in graph["onnxcompress.passes"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (each: one closed path through its modules): " + "; ".join(
        f"{len(set(c))} modules: {' -> '.join(c)}" for c in found
    )
