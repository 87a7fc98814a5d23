"""Spatial ops: pooling, reductions over space, Resize and Pad keep channels one-to-one.

Each couples batch and channel axes and leaves the spatial ones to be frozen. Reductions, Resize
and Pad are refused when they act on the channel axis (a reduced, rescaled or padded channel
axis has no one-to-one channel mapping).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.values import constant, rank_or_zero


def _couple_batch_and_channels(c: Coupler, x: ir.Value, y: ir.Value) -> None:
    if rank_or_zero(x) < 2 or rank_or_zero(y) != rank_or_zero(x):
        raise Refused("rank unknown")
    c.same(x, 0, y, 0)
    c.same(x, 1, y, 1)


class PoolRule(Rule):
    """Local and global pools: channel c of the output is pooled from channel c of the input."""

    ops = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")

    def couple(self, node: ir.Node, c: Coupler) -> None:
        if any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            raise Refused("MaxPool indices output is used")
        _couple_batch_and_channels(c, node.inputs[0], node.outputs[0])


class ReduceRule(Rule):
    """Reduce* over some axes: the other axes couple input and output (reduced ones are frozen)."""

    ops = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSumExp", "ReduceSumSquare")

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, y = node.inputs[0], node.outputs[0]
        r = rank_or_zero(x)
        axes = _reduce_axes(node, r)
        keep = node.attributes.get_int("keepdims", 1)
        kept = [a for a in range(r) if a not in axes]
        for position, axis in enumerate(kept):
            c.same(x, axis, y, axis if keep else position)


def _reduce_axes(node: ir.Node, r: int) -> set[int]:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = constant(node.inputs[1])
        if axes is None:
            raise Refused("reduction axes are not constant")
    elif "axes" in node.attributes:
        axes = np.array(node.attributes.get_ints("axes"))
    else:
        if node.attributes.get_int("noop_with_empty_axes", 0):
            raise Refused("no-op reduction")
        axes = np.arange(r)
    return {int(a) % r for a in axes.ravel()}


class ResizeRule(Rule):
    """Resize/Upsample with constant scales of 1 on batch and channel axes."""

    ops = ("Resize", "Upsample")

    def couple(self, node: ir.Node, c: Coupler) -> None:
        scales_index = 1 if node.op_type == "Upsample" else 2
        scales = constant(node.inputs[scales_index]) if len(node.inputs) > scales_index else None
        if scales is None or scales.size < 2 or not np.all(scales[:2] == 1):
            raise Refused("scales are not constant 1 on batch and channel axes")
        _couple_batch_and_channels(c, node.inputs[0], node.outputs[0])


class PadRule(Rule):
    """Pad with constant pads that leave every non-spatial axis alone."""

    ops = ("Pad",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        pads = constant(node.inputs[1]) if len(node.inputs) > 1 else np.array(node.attributes.get_ints("pads", []))
        has_axes = len(node.inputs) > 3 and node.inputs[3] is not None
        if pads is None or has_axes:
            raise Refused("pads are not constant over all axes")
        r = rank_or_zero(node.inputs[0])
        if pads.size != 2 * r or pads[1] or pads[1 + r] or pads[0] or pads[r]:
            raise Refused("pads touch the batch or channel axis")
        _couple_batch_and_channels(c, node.inputs[0], node.outputs[0])
