"""Finds the packages: each folder that pyproject.toml's ``[tool.setuptools.package-dir]`` maps into
``onnxcompress`` and every package below it, so no package list is kept by hand (all else is in pyproject.toml)."""

import sys
from pathlib import Path

from setuptools import find_packages, setup

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent


def mapped_packages() -> list[str]:
    """The mapped packages and, under each, the subpackages ``find_packages`` sees in its folder."""
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return [".".join(filter(None, (name, sub))) for name, folder in folders.items() for sub in ["", *find_packages(ROOT / folder)]]


setup(packages=mapped_packages())
