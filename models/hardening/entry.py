"""What a hardening-corpus entry is: a model no one on the team wrote, its realistic inputs and its task fidelity.

An entry builds (or locates) its ONNX model from installed packages only, nothing is fetched from a
model hub; supplies inputs in two disjoint splits (``calibration`` for passes that calibrate,
``held-out`` for judging the result); and judges a candidate's outputs against the reference model's
on the model's own task (decoded strings, top-1, nearest neighbours, detections), because one
tensor cosine can hide a collapse (class scores beside box coordinates in the hundreds).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from onnxcompress.models.hardening import cache as cache_module

Feeds = dict[str, np.ndarray]
Outputs = Mapping[str, np.ndarray]
SPLITS = ("calibration", "held-out")
INSTALL_HINT = 'pip install -e ".[hardening]"'


class MissingPackage(RuntimeError):
    """A package an entry needs is not installed; the message says what to install."""


@dataclasses.dataclass(frozen=True)
class TaskFidelity:
    """How well a candidate does the reference's task: ``score`` is the worst of ``metrics`` (1.0 = same answers);
    ``shown`` holds figures reported beside them that do not count towards the score."""

    metric: str
    metrics: dict[str, float]
    shown: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def score(self) -> float:
        """The worst task metric, in [0, 1]."""
        return min(self.metrics.values())

    def to_dict(self) -> dict:
        """JSON-ready: the metric's description, the score, every metric and the figures shown beside them."""
        return {"metric": self.metric, "score": self.score, **self.metrics, **self.shown}


Fidelity = Callable[[Feeds, Outputs, Outputs], TaskFidelity]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One corpus model: how to get it, what to feed it, and how to judge a candidate against it.

    ``make(path)`` writes the model to ``path`` (exported models) and returns it; a model a package
    ships is returned where it lies (``shipped=True``) and never copied or written. ``inputs(split, n)``
    returns ``n`` samples of a split (the first axis of every array is the sample axis).
    ``requires`` are the distributions the entry needs; ``revision`` changes when the builder does,
    so cached exports are rebuilt. ``samples`` is how many samples of each split a full evaluation
    uses (``tools/hardening_table.py``): fewer for models that take seconds per sample.
    """

    name: str
    source: str
    requires: tuple[str, ...]
    make: Callable[[Path], Path]
    inputs: Callable[[str, int], Feeds]
    fidelity: Fidelity
    shipped: bool = False
    revision: int = 1
    samples: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(SPLITS, 32))

    def check_installed(self) -> None:
        """Raise ``MissingPackage`` naming the missing distributions and the install command."""
        missing = [dist for dist in self.requires if not _installed(dist)]
        if missing:
            raise MissingPackage(f"corpus entry {self.name!r} needs {', '.join(missing)}: {INSTALL_HINT}")

    def versions(self) -> dict[str, str]:
        """Installed versions of the distributions the entry needs."""
        self.check_installed()
        return {dist: importlib.metadata.version(dist) for dist in self.requires}

    def model(self, cache: str | os.PathLike | None = None) -> Path:
        """The model's path: the shipped file, or an export cached under ``cache`` (see ``cache``)."""
        self.check_installed()
        if self.shipped:
            return self.make(Path())
        return cache_module.cached(self, cache)

    def feeds(self, split: str, count: int) -> Feeds:
        """``count`` samples of ``split`` ("calibration" or "held-out")."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.check_installed()
        return self.inputs(split, count)


def split_seed(split: str) -> int:
    """A different seed per split, so calibration and held-out samples never coincide."""
    return SPLITS.index(split) + 1


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
