"""Ops that route channels by position: Concat, Split, Slice, Gather on the channel axis.

Each maps output index i to an input index (an offset, a slice start, a gathered index) and, after
a removal, rewrites the constants that hold those positions (``split`` sizes, ``starts``/``ends``,
gather indices). Channels a Slice or Gather drops are still removable (nothing reads them).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.pruning.rules.constants import fresh_name, replace_input_with_constant
from onnxcompress.passes.values import constant, input_at, rank_or_zero

Removed = dict[tuple[int, int], list[int]]


def _kept_count(removed: Removed, value: ir.Value, axis: int) -> int:
    return value.shape[axis] - len(removed.get((id(value), axis), []))


def _couple_pieces(c: Coupler, pieces: list[ir.Value], whole: ir.Value, axis: int) -> None:
    """Index i of piece k is index offset_k + i of ``whole`` on ``axis``; other axes pass through."""
    offset = 0
    for piece in pieces:
        if piece.shape is None or not isinstance(piece.shape[axis], int):
            raise Refused("sizes on the concat/split axis are not static")
        for other in range(rank_or_zero(whole)):
            if other == axis:
                c.mapped(piece, axis, whole, axis, offset + np.arange(piece.shape[axis]))
            else:
                c.same(piece, other, whole, other)
        offset += piece.shape[axis]


class ConcatRule(Rule):
    """Concat: input k's index i is output index offset_k + i on the concat axis."""

    ops = ("Concat",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        y = node.outputs[0]
        _couple_pieces(c, list(node.inputs), y, node.attributes.get_int("axis", 0) % max(rank_or_zero(y), 1))


class SplitRule(Rule):
    """Split: output k's index i is input index offset_k + i; split sizes are rewritten."""

    ops = ("Split",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x = node.inputs[0]
        _couple_pieces(c, list(node.outputs), x, node.attributes.get_int("axis", 0) % max(rank_or_zero(x), 1))

    def rewrite(self, node: ir.Node, removed: Removed) -> None:
        axis = node.attributes.get_int("axis", 0) % rank_or_zero(node.inputs[0])
        sizes = np.array([_kept_count(removed, y, axis) for y in node.outputs], dtype=np.int64)
        node.attributes.pop("num_outputs", None)
        if node.graph.opset_imports.get("", 13) >= 13:
            if len(node.inputs) < 2:
                node.resize_inputs(2)
            replace_input_with_constant(node, 1, sizes, fresh_name(node, "pruned_split"))
        else:
            node.attributes["split"] = ir.AttrInt64s("split", sizes.tolist())


class SliceRule(Rule):
    """Slice: an axis it does not slice passes through; a sliced axis couples by position when its parameters are
    constants and its step is 1 (RoPE's halves of a head, cut at a computed middle, leave the head axis free)."""

    ops = ("Slice",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, y = node.inputs[0], node.outputs[0]
        if node.attributes.get("starts") is not None:
            raise Refused("Slice-1 attributes")
        sliced = slice_axes(node)
        positions_known = all(constant(v) is not None for v in node.inputs[1:] if v is not None)
        for axis in range(rank_or_zero(x)):
            if axis not in sliced:
                c.same(x, axis, y, axis)
                continue
            reason = "slice parameters are not constant"
            if positions_known:
                start, step = _slice_params(node, sliced, axis)
                if step == 1 and isinstance(y.shape[axis], int) and isinstance(x.shape[axis], int):
                    c.mapped(y, axis, x, axis, _normalized_start(start, x.shape[axis]) + np.arange(y.shape[axis]))
                    continue
                reason = "strided or dynamic slice"
            c.freeze(x, axis, reason)
            c.freeze(y, axis, reason)

    def rewrite(self, node: ir.Node, removed: Removed) -> None:
        x, y = node.inputs[0], node.outputs[0]
        sliced = slice_axes(node)
        if not any(removed.get((id(x), axis)) for axis in sliced):
            return  # only axes it does not slice lost elements (computed starts/ends stay as they are)
        starts, ends = constant(node.inputs[1]).copy(), constant(node.inputs[2]).copy()
        for k, axis in enumerate(sliced):
            gone = removed.get((id(x), axis), [])
            if not gone or not isinstance(x.shape[axis], int):
                continue
            start = _normalized_start(int(starts[k]), x.shape[axis])
            starts[k] = start - sum(1 for i in gone if i < start)
            ends[k] = starts[k] + _kept_count(removed, y, axis)
        replace_input_with_constant(node, 1, starts, fresh_name(node, "pruned_starts"))
        replace_input_with_constant(node, 2, ends, fresh_name(node, "pruned_ends"))


def slice_axes(node: ir.Node) -> list[int]:
    """The axes ``node`` slices: its ``axes`` input, or the first len(starts) axes (Refused when not known)."""
    r = rank_or_zero(node.inputs[0])
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        given = constant(node.inputs[3])
        if given is None:
            raise Refused("slice axes are not constant")
        return [int(a) % r for a in given.ravel()]
    starts = node.inputs[1]
    if starts.shape is None or len(starts.shape) != 1 or not isinstance(starts.shape[0], int):
        raise Refused("slice axes are not known")
    return list(range(starts.shape[0]))


def _slice_params(node: ir.Node, sliced: list[int], axis: int) -> tuple[int, int]:
    """(start, step) of ``axis``, one of the ``sliced`` axes, from the node's constant parameters."""
    k = sliced.index(axis)
    steps = constant(input_at(node, 4))
    return int(constant(node.inputs[1])[k]), 1 if steps is None else int(steps[k])


def _normalized_start(start: int, size: int) -> int:
    return min(max(start + size if start < 0 else start, 0), size)


class GatherRule(Rule):
    """Gather: other axes pass through; constant 1-D indices map the gathered axis (rewritten)."""

    ops = ("Gather",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, indices = node.inputs
        y = node.outputs[0]
        axis = node.attributes.get_int("axis", 0) % max(rank_or_zero(x), 1)
        q = rank_or_zero(indices)
        for other in range(rank_or_zero(x)):
            if other < axis:
                c.same(x, other, y, other)
            elif other > axis:
                c.same(x, other, y, other + q - 1)
        picked = constant(indices)
        if picked is not None and picked.ndim == 1 and isinstance(x.shape[axis], int):
            c.mapped(y, axis, x, axis, np.where(picked < 0, picked + x.shape[axis], picked))
            c.handle(indices, 0)

    def rewrite(self, node: ir.Node, removed: Removed) -> None:
        x, indices = node.inputs
        axis = node.attributes.get_int("axis", 0) % rank_or_zero(x)
        gone = removed.get((id(x), axis), [])
        if not gone:
            return
        picked = constant(indices)
        picked = np.where(picked < 0, picked + x.shape[axis], picked)
        gone_y = set(removed.get((id(node.outputs[0]), axis), []))
        new_position = np.cumsum(~np.isin(np.arange(x.shape[axis]), gone)) - 1
        kept = [int(new_position[p]) for i, p in enumerate(picked.tolist()) if i not in gone_y]
        replace_input_with_constant(node, 1, np.array(kept, dtype=picked.dtype), fresh_name(node, "pruned_indices"))
