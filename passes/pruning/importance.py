"""How much each removable unit matters: magnitude, activations over calibration data, dead units.

Activation importance comes in three flavours, all from one streamed pass over calibration data:
|W|·‖X‖ (``activation``), mean |a| (``mean_abs``) and 1 − APoZ (``apoz``), each measured on the
activations that weighted layers (Conv/Gemm/MatMul) read.

Scores are computed per *element* of the channel graph and summed over a unit's elements, so a
unit's score covers every weight slice it would remove (its filter, the next layer's input slice,
its BatchNorm vector) — Torch-Pruning's group importance, on the ONNX graph. ``normalise`` divides
by each group's mean so that ``scope=global`` compares groups of different scale fairly (``normalise=false``
ranks the raw scores, for units that write into one shared tensor).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import ChannelGraph, Slot, Unit
from onnxcompress.passes.pruning.groups import is_weight, stored_weight, weight_array, weighted_contractions


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
    return _per_unit(per_element, units) ** (1.0 / p)


class ChannelStatistics:
    """Running per-channel sums of one activation over calibration batches (memory: O(channels))."""

    def __init__(self, channels: int) -> None:
        self.abs_sum = np.zeros(channels)
        self.square_sum = np.zeros(channels)
        self.zero_count = np.zeros(channels)
        self.count = 0

    def add(self, batch: np.ndarray, axis: int) -> None:
        """Accumulate one batch, ``axis`` being the channel axis."""
        moved = np.moveaxis(batch.astype(np.float64), axis, 0).reshape(self.abs_sum.size, -1)
        self.abs_sum += np.abs(moved).sum(axis=1)
        self.square_sum += (moved**2).sum(axis=1)
        self.zero_count += (moved == 0).sum(axis=1)
        self.count += moved.shape[1]

    def mean_abs(self) -> np.ndarray:
        """Mean |a| per channel."""
        return self.abs_sum / max(self.count, 1)

    def rms(self) -> np.ndarray:
        """Root mean square ‖X‖ per channel."""
        return np.sqrt(self.square_sum / max(self.count, 1))

    def apoz(self) -> np.ndarray:
        """Average percentage of zeros per channel (as a fraction: 1 = always zero)."""
        return self.zero_count / max(self.count, 1)


def channel_statistics(graph: ChannelGraph, model: ir.Model, reader) -> dict[str, ChannelStatistics]:
    """Per-channel statistics of every activation a weighted contraction reads, keyed by tensor name.

    Activations are streamed batch by batch (``calibration.activations.stream_activations``) into
    running sums per channel, so memory is bounded by the channel counts, not the sample count.
    """
    from onnxcompress.calibration.activations import stream_activations

    inputs = {x.value.name: x for x, _ in weighted_contractions(graph)}
    stats = {name: ChannelStatistics(x.size) for name, x in inputs.items()}
    for batch in stream_activations(model, reader, list(inputs)):
        for name, x in inputs.items():
            stats[name].add(batch[name], x.axis)
    return stats


def activation_scores(graph: ChannelGraph, units: list[Unit], model: ir.Model, reader) -> np.ndarray:
    """|W|·‖X‖ per unit: each contraction's input RMS over calibration data times its weight-slice norm."""
    stats = channel_statistics(graph, model, reader)
    per_element = np.zeros(graph.element_count)
    for x, w in weighted_contractions(graph):
        rms = stats[x.value.name].rms()
        per_element[x.offset : x.offset + x.size] += rms * read_norms(x, w)
    return _per_unit(per_element, units)


def read_norms(x: Slot, w: Slot) -> np.ndarray:
    """The norm of the weight slice reading each channel of ``x``: its own slice, or in a grouped convolution (``x``
    the groups times the slices) that slice of its group's filters."""
    array = weight_array(w)
    if x.size == w.size:
        return slice_norms(array, w.axis)
    return np.concatenate([slice_norms(filters, w.axis) for filters in np.split(array, x.size // w.size, axis=0)])


def mean_abs_scores(graph: ChannelGraph, units: list[Unit], model: ir.Model, reader) -> np.ndarray:
    """Mean |a| per unit: the mean magnitude of its channels wherever a weighted layer reads them."""
    return _activation_statistic_scores(graph, units, model, reader, ChannelStatistics.mean_abs)


def apoz_scores(graph: ChannelGraph, units: list[Unit], model: ir.Model, reader) -> np.ndarray:
    """1 − APoZ per unit (Hu et al. 2016): a channel that is zero more often matters less.

    APoZ counts exact zeros, so it separates channels after ReLU-like activations (ReLU, hard-swish
    below −3); after activations that are never exactly zero every channel scores the same.
    """
    return _activation_statistic_scores(graph, units, model, reader, lambda s: 1.0 - s.apoz())


def _activation_statistic_scores(
    graph: ChannelGraph, units: list[Unit], model: ir.Model, reader, statistic: Callable[[ChannelStatistics], np.ndarray]
) -> np.ndarray:
    """Sum over each unit of ``statistic`` of its channels, once per read activation tensor."""
    stats = channel_statistics(graph, model, reader)
    per_element = np.zeros(graph.element_count)
    for x, _ in weighted_contractions(graph):
        per_element[x.offset : x.offset + x.size] = statistic(stats[x.value.name])
    return _per_unit(per_element, units)


def _per_unit(per_element: np.ndarray, units: list[Unit]) -> np.ndarray:
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
        if stored_weight(w.value) is not None:
            live[w.offset : w.offset + w.size] = slice_norms(weight_array(w), w.axis) > 0
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
