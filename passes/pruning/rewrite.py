"""Apply a removal: slice every tensor of the chosen units at once, then fix attributes and shapes.

Order matters: rules rewrite their nodes' attributes and shape constants first (they read the old
sizes), then every initializer in the units is sliced and every activation's static shape shrinks.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import ChannelGraph, Slot, Unit
from onnxcompress.passes.pruning.rules import rule_for

Removed = dict[tuple[int, int], list[int]]


def removed_indices(graph: ChannelGraph, units: list[Unit]) -> tuple[Removed, dict[tuple[int, int], Slot]]:
    """Sorted removed indices per ``(id(value), axis)``, and the slot of each key."""
    removed: dict[tuple[int, int], list[int]] = defaultdict(list)
    slots: dict[tuple[int, int], Slot] = {}
    for unit in units:
        for slot, indices in unit.indices(graph).items():
            key = (id(slot.value), slot.axis)
            removed[key].extend(indices)
            slots[key] = slot
    return {k: sorted(set(v)) for k, v in removed.items()}, slots


def apply_removal(model: ir.Model, graph: ChannelGraph, units: list[Unit]) -> Removed:
    """Remove ``units`` from ``model`` in place; return what was removed per tensor axis."""
    removed, slots = removed_indices(graph, units)
    touched = {key[0] for key in removed}
    for node in list(model.graph):
        if any(id(v) in touched for v in (*node.inputs, *node.outputs) if v is not None):
            rule_for(node).rewrite(node, removed)
    for key, indices in removed.items():
        _shrink(slots[key], indices)
    return removed


def _shrink(slot: Slot, indices: list[int]) -> None:
    value = slot.value
    if value.const_value is not None:
        array = np.delete(value.const_value.numpy(), indices, axis=slot.axis)
        value.const_value = ir.tensor(np.ascontiguousarray(array), name=value.name)  # hashing (cleanup's dedup) needs C order
    dims = list(value.shape)
    dims[slot.axis] = dims[slot.axis] - len(indices)
    value.shape = ir.Shape(dims)
