"""pyproject.toml keeps up with the code: every third-party module the package imports (lazily or
not) is a declared dependency or in an extra, and the core imports with no extra installed."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]  # package name -> folder
# packages and modules behind the torch extra (the recover pass itself imports without it and asks for it when run)
NEEDS_TORCH = ("onnxcompress.distill", "onnxcompress.models", "onnxcompress.apps", "onnxcompress.passes.training.graph_module",
               "onnxcompress.passes.training.torch_ops", "onnxcompress.passes.training.targets",
               "onnxcompress.passes.training.fake_quant", "onnxcompress.passes.training.trimming")
HINTS = {"demo": "onnxcompress[torch]", "distill-minilm": "onnxcompress[minilm]"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group()) for r in requirements}


@cache
def _imported_modules() -> dict[str, set[str]]:
    """Third-party top-level module -> the package files importing it (imports inside functions too)."""
    first_party = {"onnxcompress"}
    found: dict[str, set[str]] = {}
    for folder in PACKAGE_DIRS.values():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {n.split(".")[0] for n in names} - first_party - set(sys.stdlib_module_names):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@cache
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    """The distributions providing ``module`` (its own name when it is not installed here)."""
    return {_canonical(d) for d in _module_distributions().get(module, [module])}


def test_every_imported_module_is_declared():
    project = PYPROJECT["project"]
    declared = _requirement_names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared |= _requirement_names(extra)
    undeclared = {m: sorted(files) for m, files in _imported_modules().items() if not _distributions(m) & declared}
    assert undeclared == {}, f"imported but declared neither as a dependency nor in an extra: {undeclared}"


def test_core_and_cli_import_without_any_extra(tmp_path):
    """Block every module only an extra provides; every core module imports, ``-h`` works on every
    command, and the commands that need an extra name the install command."""
    core = _requirement_names(PYPROJECT["project"]["dependencies"])
    extra_only = sorted(m for m in _imported_modules() if not _distributions(m) & core)
    assert "torch" in extra_only
    script = f"""
import importlib, json, pkgutil, sys
for name in {extra_only!r}:
    sys.modules[name] = None  # "import name" now raises ModuleNotFoundError
for package in {sorted(PACKAGE_DIRS)!r}:
    if package.startswith({NEEDS_TORCH!r}):
        continue
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if not info.name.startswith({NEEDS_TORCH!r}):
            importlib.import_module(info.name)
from onnxcompress.cli import app, main
codes = {{"-h": main(["-h"])}}
codes.update({{info.name: main([info.name, "-h"]) for info in app.registered_commands}})
codes.update({{name: main([name, "--out", {str(tmp_path)!r} + "/" + name]) for name in {sorted(HINTS)!r}}})
print(json.dumps(codes))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    assert {name: code for name, code in codes.items() if name not in HINTS} == dict.fromkeys(set(codes) - set(HINTS), 0)
    assert len(codes) > len(HINTS) + 5  # the app and each of its commands answered -h
    assert {name: codes[name] for name in HINTS} == dict.fromkeys(HINTS, 2)
    for extra in HINTS.values():
        assert f"pip install '{extra}'" in done.stderr
