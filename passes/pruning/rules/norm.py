"""Normalisations: per-channel statistics and affine vectors follow the channel they belong to.

BatchNormalization and InstanceNormalization normalise each channel on its own, so removing a
channel is exact for the others. LayerNormalization normalises *across* its trailing axes: removing
a feature changes every other feature's statistics, so those axes are coupled only when the pass is
asked to (``layernorm=True``, lossy) and frozen otherwise.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.values import rank_or_zero

def _couple_same_axes(c: Coupler, x: ir.Value, y: ir.Value, axes: range) -> None:
    for axis in axes:
        c.same(x, axis, y, axis)


class ChannelNormRule(Rule):
    """BatchNormalization / InstanceNormalization: x, y and every per-channel vector share axis 1."""

    ops = ("BatchNormalization", "InstanceNormalization")

    def couple(self, node: ir.Node, c: Coupler) -> None:
        if any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            raise Refused("training-mode statistics outputs are used")
        x, y = node.inputs[0], node.outputs[0]
        if rank_or_zero(x) < 2 or rank_or_zero(y) != rank_or_zero(x):
            raise Refused("rank unknown")
        _couple_same_axes(c, x, y, range(rank_or_zero(x)))
        for vector in node.inputs[1:]:
            if vector is not None:
                c.same(vector, 0, x, 1)


class LayerNormRule(Rule):
    """LayerNormalization: leading axes couple; normalised axes only when allowed (lossy)."""

    ops = ("LayerNormalization",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        if any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            raise Refused("mean/inv-std outputs are used")
        x, y = node.inputs[0], node.outputs[0]
        r = rank_or_zero(x)
        first = node.attributes.get_int("axis", -1) % max(r, 1)
        _couple_same_axes(c, x, y, range(first))
        if not c.layernorm:
            for axis in range(first, r):
                c.freeze(x, axis, "normalised axis (statistics would change; enable layernorm)")
                c.freeze(y, axis, "normalised axis (statistics would change; enable layernorm)")
            return
        _couple_same_axes(c, x, y, range(first, r))
        for vector in node.inputs[1:]:
            if vector is not None:
                for axis in range(rank_or_zero(vector)):
                    c.same(vector, axis, x, axis + r - rank_or_zero(vector))
