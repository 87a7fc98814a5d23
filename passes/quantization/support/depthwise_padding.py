"""Pad depthwise convs to a multiple of 16 channels with zero filters, where ORT's int8 kernel is fast.

ORT's int8 depthwise QLinearConv runs 16 channels at a time; a channel count off that grid takes a
slow path. Measured here (ORT 1.32, AVX-512 VNNI, 3x3 depthwise at 56x56, batch 1, kernel time):
72 channels 95 us but 80 channels 50 us, and likewise 120 against 128 and 24 against 32
(``docs/measured.md``); MobileNetV3's 72 and 120 make its int8 depthwise convs slower than
FP32. No quantizer pads channels; Torch-Pruning rounds channel counts only when removing.

The padding is exact: every tensor coupled to the depthwise conv's channels (found with the pruning
dependency graph: the expanding conv's filters and bias, the activations, a squeeze-excite gate, the
projecting conv's input columns) grows by zeros, so the added channels hold values that the next
contraction multiplies by zero weights. Groups touching any op outside ``SAME_CHANNEL_OPS`` (which
could turn a zero into an infinity, or whose attributes name channels) are left alone.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.dependencies import build_channel_graph, infer_shapes
from onnxcompress.passes.pruning.graph import ChannelGraph, Slot
from onnxcompress.passes.pruning.rules.conv import is_depthwise_conv

CHANNEL_BLOCK = 16
# Ops that keep channel c in channel c and stay finite on zeros (no Div, Log, Reciprocal, BatchNormalization).
SAME_CHANNEL_OPS = frozenset({
    "Conv", "Add", "Sub", "Mul", "Relu", "LeakyRelu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh",
    "Identity", "Neg", "Abs", "Min", "Max", "GlobalAveragePool", "AveragePool", "MaxPool",
})


def pad_depthwise_channels(model: ir.Model) -> dict[str, tuple[int, int]]:
    """Pad (in place) every depthwise conv whose channel count is off the 16-channel grid; ``{conv: (old, new)}``."""
    if not any(is_depthwise_conv(node) and _channels(node) % CHANNEL_BLOCK for node in model.graph):
        return {}
    infer_shapes(model)
    graph = build_channel_graph(model)
    groups = _slots_by_group(graph)
    padded: dict[str, tuple[int, int]] = {}
    for node in list(model.graph):
        old = _channels(node)
        if not is_depthwise_conv(node) or old % CHANNEL_BLOCK == 0:
            continue
        slot = graph.slot(node.outputs[0], 1)
        members = None if slot is None else groups[graph.group_of(slot)]
        if members is None or not _paddable(graph, members, old):
            continue
        new = -(-old // CHANNEL_BLOCK) * CHANNEL_BLOCK
        _pad_group(model.graph, members, new - old)
        padded[node.name] = (old, new)
    return padded


def _channels(conv: ir.Node) -> int:
    return conv.attributes.get_int("group", 1)


def _slots_by_group(graph: ChannelGraph) -> dict[int, list[Slot]]:
    groups: dict[int, list[Slot]] = {}
    for slot in graph.slots():
        groups.setdefault(graph.group_of(slot), []).append(slot)
    return groups


def _paddable(graph: ChannelGraph, members: list[Slot], channels: int) -> bool:
    """True when every coupled axis is ``channels`` long, channel i couples only to channel i, and only
    ``SAME_CHANNEL_OPS`` read or write the coupled activations."""
    if any(slot.size != channels for slot in members):
        return False
    if any(slot.offset + i in graph.frozen for slot in members for i in range(channels)):
        return False
    for i in range(channels):
        unit = graph.unit_of(members[0].offset + i)
        if any(graph.unit_of(slot.offset + i) != unit for slot in members):
            return False
    activations = [slot.value for slot in members if slot.value.const_value is None]
    for value in activations:
        nodes = [user for user, _ in value.uses()] + ([value.producer()] if value.producer() is not None else [])
        if any(n.op_type not in SAME_CHANNEL_OPS or n.domain not in ("", "ai.onnx") for n in nodes):
            return False
    return True


def _pad_group(graph: ir.Graph, members: list[Slot], extra: int) -> None:
    """Append ``extra`` zero channels to every coupled axis and widen the depthwise convs' ``group``."""
    weights = {id(slot.value) for slot in members}
    depthwise = [node for node in graph if is_depthwise_conv(node) and id(node.inputs[1]) in weights]
    for slot in members:
        value = slot.value
        if value.const_value is not None:
            array = value.const_value.numpy()
            widths = [(0, extra if axis == slot.axis else 0) for axis in range(array.ndim)]
            value.const_value = ir.tensor(np.pad(array, widths), name=value.name)
        dims = list(value.shape)
        dims[slot.axis] = dims[slot.axis] + extra
        value.shape = ir.Shape(dims)
    for node in depthwise:
        node.attributes["group"] = ir.AttrInt64("group", node.inputs[1].const_value.shape[0])
