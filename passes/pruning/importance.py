"""How much each removable unit matters: magnitude, activations over calibration data, dead units.

Scores are computed per *element* of the channel graph and summed over a unit's elements, so a
unit's score covers every weight slice it would remove (its filter, the next layer's input slice,
its BatchNorm vector) — Torch-Pruning's group importance, on the ONNX graph. ``normalise`` divides
by each group's mean so that ``scope=global`` compares groups of different scale fairly.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import ChannelGraph, Unit
from onnxcompress.passes.pruning.groups import is_weight


def slice_norms(array: np.ndarray, axis: int, p: int = 2) -> np.ndarray:
    """The p-norm of every slice of ``array`` along ``axis`` (p=1: L1, p=2: L2)."""
    moved = np.moveaxis(np.abs(array.astype(np.float32)), axis, 0).reshape(array.shape[axis], -1)
    return moved.sum(axis=1) if p == 1 else np.sqrt((moved**2).sum(axis=1))


def magnitude_scores(graph: ChannelGraph, units: list[Unit], p: int = 2) -> np.ndarray:
    """Sum over each unit of the p-norms of its weight slices."""
    per_element = np.zeros(graph.element_count)
    for slot in graph.slots():
        if is_weight(slot):
            norms = slice_norms(slot.value.const_value.numpy(), slot.axis, p)
            per_element[slot.offset : slot.offset + slot.size] = norms**p
    return np.array([per_element[u.elements].sum() for u in units]) ** (1.0 / p)


def activation_scores(graph: ChannelGraph, units: list[Unit], model: ir.Model, reader) -> np.ndarray:
    """|W|·‖X‖ per unit: each contraction's input RMS over calibration data times its weight-slice norm.

    Activations are streamed batch by batch (``calibration.activations.stream_activations``), keeping
    only a running sum of squares per channel: memory is bounded by the channel counts.
    """
    from onnxcompress.calibration.activations import stream_activations

    pairs = [(x, w) for x, w in graph.contractions if is_weight(w) and not is_weight(x)]
    inputs = {x.value.name: x for x, _ in pairs}
    squares = {name: np.zeros(x.size) for name, x in inputs.items()}
    counts = dict.fromkeys(inputs, 0)
    for batch in stream_activations(model, reader, list(inputs)):
        for name, x in inputs.items():
            moved = np.moveaxis(batch[name].astype(np.float64), x.axis, 0).reshape(x.size, -1)
            squares[name] += (moved**2).sum(axis=1)
            counts[name] += moved.shape[1]
    per_element = np.zeros(graph.element_count)
    for x, w in pairs:
        rms = np.sqrt(squares[x.value.name] / max(counts[x.value.name], 1))
        per_element[x.offset : x.offset + x.size] += rms * slice_norms(w.value.const_value.numpy(), w.axis)
    return np.array([per_element[u.elements].sum() for u in units])


def dead_units(graph: ChannelGraph, units: list[Unit]) -> np.ndarray:
    """Units whose every reader is a weight slice of zeros: removing them changes no output.

    A unit is read where it is summed away (Conv/Gemm/MatMul contractions); a contraction of two
    activations (attention) counts as a live reader.
    """
    live = np.zeros(graph.element_count, dtype=bool)
    reads = np.zeros(graph.element_count, dtype=bool)
    for x, w in graph.contractions:
        reads[x.offset : x.offset + x.size] = True
        if is_weight(w):
            live[w.offset : w.offset + w.size] = slice_norms(w.value.const_value.numpy(), w.axis) > 0
        else:
            live[x.offset : x.offset + x.size] = True
    return np.array([reads[u.elements].any() and not live[u.elements].any() for u in units])


def normalise(scores: np.ndarray, units: list[Unit]) -> np.ndarray:
    """Divide each score by its group's mean (groups of different scale become comparable)."""
    groups = np.array([u.group for u in units])
    out = scores.astype(np.float64).copy()
    for group in np.unique(groups):
        members = groups == group
        mean = out[members].mean()
        if mean > 0:
            out[members] /= mean
    return out
