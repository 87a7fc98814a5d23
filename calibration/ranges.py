"""Activation ranges over calibration data, and their JSON file so calibration runs once.

``estimate_ranges`` streams the named tensors batch by batch into one estimator per tensor. Against
ORT's ``EntropyCalibrater`` (``tools/bench_calibration.py``; figures in ``docs/measured.md``) it is
faster and its peak RSS stays flat as the sample count grows, where ORT's grows, because ORT keeps
every batch's activations until the end.
The file records the estimator, its options and a hash of the model's graph, so ``load_ranges`` can
refuse ranges computed for another model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.calibration.activations import stream_activations
from onnxcompress.calibration.estimators import make_estimator
from onnxcompress.errors import UsageError

FORMAT = "onnxcompress.ranges/1"


class Ranges(dict):
    """``{tensor name: (lo, hi)}`` that also remembers how it was estimated and for which model."""

    def __init__(self, ranges=(), *, method: str = "", options: dict | None = None, model_hash: str = "") -> None:
        super().__init__(ranges)
        self.method = method
        self.options = dict(options or {})
        self.model_hash = model_hash


def estimate_ranges(
    model: ir.Model, reader, tensor_names: Sequence[str], method: str = "minmax", **options: Any
) -> Ranges:
    """Stream ``reader`` through ``model`` and estimate a ``(lo, hi)`` range for each named tensor.

    The estimators see finite values only; a tensor that held -inf (+inf), such as an attention mask, gets
    -inf (+inf) as that end of its range, so that no quantizer takes it for a tensor of zeros. A tensor that
    held no values at all (a key-value cache at a sequence's first step) gets no range."""
    estimators = {name: make_estimator(method, **options) for name in tensor_names}
    infinite = {name: [False, False] for name in tensor_names}
    held_values = set()
    for activations in stream_activations(model, reader, list(estimators)):
        for name, array in activations.items():
            estimators[name].update(array)
            _note_infinities(infinite[name], np.asarray(array))
            if np.size(array):
                held_values.add(name)
    ranges = {}
    for name, estimator in estimators.items():
        if name not in held_values:
            continue
        try:
            lo, hi = estimator.range()
        except UsageError as exc:
            raise UsageError(f"cannot estimate the range of {name!r}: {exc}") from None
        low_inf, high_inf = infinite[name]
        ranges[name] = (-math.inf if low_inf else lo, math.inf if high_inf else hi)
    return Ranges(ranges, method=method, options=options, model_hash=model_hash(model))


def _note_infinities(seen: list[bool], array: np.ndarray) -> None:
    """Set ``seen`` to whether -inf and +inf have been seen, given ``array`` too."""
    if array.dtype.kind != "f" or all(seen):
        return
    infinite = array[np.isinf(array)]
    seen[0] = seen[0] or bool((infinite < 0).any())
    seen[1] = seen[1] or bool((infinite > 0).any())


def model_hash(model: ir.Model) -> str:
    """SHA-256 of the model's graph (nodes, initializers, signature), independent of metadata."""
    proto = io.to_proto(model)
    return hashlib.sha256(proto.graph.SerializeToString(deterministic=True)).hexdigest()


def save_ranges(
    ranges: dict[str, tuple[float, float]], path: str | os.PathLike, *, inputs: Iterable[ir.Model] = ()
) -> Path:
    """Write ``ranges`` (with the method, options and model hash of a ``Ranges``) as JSON with ``io.write_bytes``.

    ``inputs``: the models whose files the ranges file must never overwrite.
    """
    document = {
        "format": FORMAT,
        "method": getattr(ranges, "method", ""),
        "options": getattr(ranges, "options", {}),
        "model_sha256": getattr(ranges, "model_hash", ""),
        "ranges": {name: [float(lo), float(hi)] for name, (lo, hi) in ranges.items()},
    }
    return io.write_bytes(path, json.dumps(document, indent=1, sort_keys=True).encode(), inputs=inputs)


def load_ranges(path: str | os.PathLike, model: ir.Model | None = None) -> Ranges:
    """Read a ranges file; with ``model``, refuse ranges that were estimated for a different graph."""
    path = Path(path)
    text = io.read_text(path, "ranges file")
    try:
        document = json.loads(text)
        ranges = {name: (float(lo), float(hi)) for name, (lo, hi) in document["ranges"].items()}
        loaded = Ranges(ranges, method=document["method"], options=document["options"], model_hash=document["model_sha256"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{path}: not an onnxcompress ranges file") from None
    if document.get("format") != FORMAT:
        raise UsageError(f"{path}: not an onnxcompress ranges file")
    if model is not None and loaded.model_hash and loaded.model_hash != model_hash(model):
        raise UsageError(f"{path}: ranges were estimated for a different model (graph hash differs)")
    return loaded
