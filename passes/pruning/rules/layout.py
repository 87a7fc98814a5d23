"""Layout ops: Transpose, Squeeze/Unsqueeze, Shape, Expand, and the reshapes (Flatten, Reshape).

A reshape is matched axis group by axis group (equal products). When each run-time axis stays one
run-time axis of the same size, the static axes between them are grouped too (GQA's
``[B, KV, rep, S, D]`` → ``[B, KV·rep, S, D]``); otherwise only after a prefix ending at the last
run-time batch/sequence axis, whose axes may merge or split among themselves (its static ones are
frozen), as ``[S, B, N, H]`` → ``[S·B, N·H]`` keeps its static tail's layout whatever the prefix
does when both tails hold as many elements. A kept axis couples one-to-one; a merge (Flatten into a
linear layer, attention head merge) couples outer index c with inner elements [c·S, (c+1)·S); a split
(attention head split) couples the other way round and freezes the inner axis; when every reader takes
a split's first axis apart (q, k and v stacked before their heads, as timm's attention has them), the heads are
the next axis and the stacked one is frozen alone. Reshape's target-shape
entry of a changed axis must be a constant (directly, or a constant piece of a Concat built from
``Shape`` pieces, or a computed piece of a static dim): it is rewritten; otherwise the axis is frozen.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import PROBED, Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.pruning.rules.constants import fresh_name, replace_input_with_constant, set_entries
from onnxcompress.passes.pruning.rules.elementwise import couple_broadcast
from onnxcompress.passes.pruning.rules.routing import slice_axes
from onnxcompress.passes.values import constant, rank_or_zero, same_dim


def _axes(node: ir.Node, r: int) -> list[int]:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = constant(node.inputs[1])
        if axes is None:
            raise Refused("axes are not constant")
        return sorted(int(a) % r for a in axes.ravel())
    return sorted(a % r for a in node.attributes.get_ints("axes", []))


class TransposeRule(Rule):
    """Output axis i is input axis perm[i]."""

    ops = ("Transpose",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, y = node.inputs[0], node.outputs[0]
        perm = node.attributes.get_ints("perm", list(reversed(range(rank_or_zero(x)))))
        for i, source in enumerate(perm):
            c.same(x, source, y, i)


class SqueezeRule(Rule):
    """Squeeze/Unsqueeze: the surviving axes couple in order."""

    ops = ("Squeeze", "Unsqueeze")

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, y = node.inputs[0], node.outputs[0]
        if x.shape is None or y.shape is None:
            raise Refused("rank unknown")
        if node.op_type == "Unsqueeze":
            extra = set(_axes(node, rank_or_zero(y)))
            pairs = zip(range(rank_or_zero(x)), [a for a in range(rank_or_zero(y)) if a not in extra])
        else:
            dropped = set(_axes(node, rank_or_zero(x))) or {a for a in range(rank_or_zero(x)) if x.shape[a] == 1}
            pairs = zip([a for a in range(rank_or_zero(x)) if a not in dropped], range(rank_or_zero(y)))
        for in_axis, out_axis in pairs:
            c.same(x, in_axis, y, out_axis)


class ShapeRule(Rule):
    """Shape reads the tensor's current dims, so any of them may change."""

    ops = ("Shape",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        for axis in range(rank_or_zero(node.inputs[0])):
            c.handle(node.inputs[0], axis)


class ExpandRule(Rule):
    """Expand: the input's axes couple with the output's under broadcasting. An axis expanded from 1 holds copies
    (GQA's or MQA's copies of a key head, one per query head): any of them can go, whatever goes beside it. A changed
    axis's target-shape entry becomes 1 where the input's axis changed with it (keep the input's size) and the copies
    kept where it was expanded, also when the target shape is computed at run time from ``Shape`` pieces."""

    ops = ("Expand",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, shape, y = node.inputs[0], node.inputs[1], node.outputs[0]
        if shape.shape is None or len(shape.shape) != 1 or not isinstance(shape.shape[0], int):
            raise Refused("target-shape length unknown")
        couple_broadcast(c, x, y)
        for axis in _expanded_axes(x, y):
            c.handle(y, axis)

    def rewrite(self, node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
        x, y, length = node.inputs[0], node.outputs[0], node.inputs[1].shape[0]
        expanded, offset = set(_expanded_axes(x, y)), rank_or_zero(y) - length
        entries = {axis - offset: y.shape[axis] - len(gone) if axis in expanded else 1
                   for axis in range(rank_or_zero(y)) if (gone := removed.get((id(y), axis))) and axis >= offset}
        if entries:
            set_entries(node, 1, entries)


def _expanded_axes(x: ir.Value, y: ir.Value) -> list[int]:
    """The axes of ``y`` that Expand broadcast from a 1 of ``x`` to a known larger size."""
    offset = rank_or_zero(y) - rank_or_zero(x)
    return [axis + offset for axis in range(rank_or_zero(x))
            if x.shape[axis] == 1 and isinstance(y.shape[axis + offset], int) and y.shape[axis + offset] > 1]


def couple_reshape(c: Coupler, x: ir.Value, y: ir.Value) -> list[int]:
    """Couple a reshape's axes group by group; return the output axes whose size may change."""
    if x.shape is None or y.shape is None:
        raise Refused("shapes unknown")
    din, dout = list(x.shape), list(y.shape)
    groups = _groups_between_runtime_axes(x, y)
    if groups is None:
        groups = _groups_after_runtime_prefix(c, x, y)
    changing = []
    for ins, outs in groups:
        ins = [a for a in ins if din[a] != 1]
        outs = [a for a in outs if dout[a] != 1]
        if len(ins) == 1 and len(outs) == 1:
            c.same(x, ins[0], y, outs[0])
        elif len(ins) == 1 and len(outs) > 2 and _selects_pieces(y, outs[0]):
            heads = outs[1]  # [3, H, D]: q, k and v stacked before their heads (timm's attention)
            c.split_heads(x, ins[0], y, heads, inner=math.prod(dout[a] for a in outs[2:]))
            c.freeze(y, outs[0], "selects stacked pieces (q, k, v)")
            for inner in outs[2:]:
                c.freeze(y, inner, "inner axis of a split")
            changing.append(heads)
            continue
        elif len(ins) == 1 and outs:
            c.split_heads(x, ins[0], y, outs[0])
            for inner in outs[1:]:
                c.freeze(y, inner, "inner axis of a split")
        elif len(outs) == 1 and len(ins) == 2 and _no_channel(c, x, ins[0]):
            c.periods(y, outs[0], x, ins[1])
            c.freeze(x, ins[0], "outer axis of a merge")
        elif len(outs) == 1 and ins:
            c.blocks(x, ins[0], y, outs[0])
            for inner in ins[1:]:
                c.freeze(x, inner, "inner axis of a merge")
        else:
            continue
        changing.append(outs[0])
    return changing


def _no_channel(c: Coupler, x: ir.Value, axis: int) -> bool:
    """Whether every element of ``x``'s ``axis`` is already frozen (a direction axis): the merge's channel, if any,
    is then the axis inside it."""
    slot = c.graph.slot(x, axis)
    return slot is not None and c.graph.all_frozen(slot)


def _selects_pieces(value: ir.Value, axis: int) -> bool:
    """Whether every reader of ``axis`` of ``value`` (through Transposes) takes it apart into separate tensors, as
    attention unstacks its q, k and v: a Split along it, a Gather of one index on it, a Slice of it alone."""
    uses = value.uses()
    for node, _ in uses:
        if node.op_type == "Transpose":
            perm = node.attributes.get_ints("perm", list(reversed(range(rank_or_zero(value)))))
            if not _selects_pieces(node.outputs[0], perm.index(axis)):
                return False
        elif _unstacking_axis(node, rank_or_zero(value)) != axis:
            return False
    return bool(uses)


def _unstacking_axis(node: ir.Node, rank: int) -> int | None:
    """The axis ``node`` takes pieces of (Split, a Gather of one index, a Slice of one constant axis), else None."""
    if node.op_type == "Split" or node.op_type == "Gather" and rank_or_zero(node.inputs[1]) == 0:
        return node.attributes.get_int("axis", 0) % rank
    if node.op_type == "Slice" and len(node.inputs) > 1:  # Slice-1 keeps its axes in attributes: not read here
        try:
            axes = slice_axes(node)
        except Refused:  # axes not known
            return None
        return axes[0] if len(axes) == 1 else None
    return None


def _groups_between_runtime_axes(x: ir.Value, y: ir.Value) -> list[tuple[list[int], list[int]]] | None:
    """The static axis groups when each run-time axis of ``x`` stays one run-time axis of ``y``, in order, and the
    static axes between two of them hold as many elements on both sides (GQA's ``[B, KV, rep, S, D]`` ->
    ``[B, KV·rep, S, D]``); None otherwise."""
    din, dout = list(x.shape), list(y.shape)
    runtime_in = [a for a, d in enumerate(din) if not isinstance(d, int)]
    runtime_out = [a for a, d in enumerate(dout) if not isinstance(d, int)]
    if len(runtime_in) != len(runtime_out) or not all(_same_runtime_dim(x, a, y, b) for a, b in zip(runtime_in, runtime_out)):
        return None
    groups = []
    for start_in, end_in, start_out, end_out in zip([0] + [a + 1 for a in runtime_in], runtime_in + [len(din)],
                                                    [0] + [b + 1 for b in runtime_out], runtime_out + [len(dout)]):
        if math.prod(din[start_in:end_in]) != math.prod(dout[start_out:end_out]) or 0 in din[start_in:end_in]:
            return None
        groups += _product_groups(din[:end_in], dout[:end_out], start_in, start_out)
    return groups


def _same_runtime_dim(x: ir.Value, a: int, y: ir.Value, b: int) -> bool:
    """Whether run-time axis ``a`` of ``x`` and ``b`` of ``y`` had the same size in both probe runs (the same
    symbolic dim when the model was not probed)."""
    probed_x, probed_y = x.meta.get(PROBED), y.meta.get(PROBED)
    if probed_x is not None and probed_y is not None:
        return all(px[a] == py[b] for px, py in zip(probed_x, probed_y))
    return same_dim(x.shape[a], y.shape[b])


def _groups_after_runtime_prefix(c: Coupler, x: ir.Value, y: ir.Value) -> list[tuple[list[int], list[int]]]:
    """The static axis groups after a prefix ending at the last run-time axis, whose static axes are frozen."""
    din, dout = list(x.shape), list(y.shape)
    lead_in, lead_out = _dynamic_prefix(din), _dynamic_prefix(dout)
    if not all(isinstance(d, int) for d in din[lead_in:] + dout[lead_out:]):
        raise Refused("only a prefix of run-time axes is supported")
    if math.prod(din[lead_in:]) != math.prod(dout[lead_out:]) or 0 in din[lead_in:]:
        raise Refused("static sizes of input and output do not match")
    for value, dims, lead in ((x, din, lead_in), (y, dout, lead_out)):
        for axis in range(lead):
            if isinstance(dims[axis], int):
                c.freeze(value, axis, "static axis among run-time axes")
            else:
                c.handle(value, axis)
    return _product_groups(din, dout, lead_in, lead_out)


def _dynamic_prefix(dims: list) -> int:
    """How many leading axes end at the last run-time one (a static sequence axis before a run-time batch counts)."""
    return max((axis + 1 for axis, d in enumerate(dims) if not isinstance(d, int)), default=0)


def _product_groups(din: list[int], dout: list[int], start_in: int, start_out: int) -> list[tuple[list[int], list[int]]]:
    groups, i, j = [], start_in, start_out
    while i < len(din) and j < len(dout):
        ins, outs = [i], [j]
        pin, pout = din[i], dout[j]
        while pin != pout:
            if pin < pout:
                i += 1
                ins.append(i)
                pin *= din[i]
            else:
                j += 1
                outs.append(j)
                pout *= dout[j]
        groups.append((ins, outs))
        i, j = i + 1, j + 1
    return groups


class FlattenRule(Rule):
    """Flatten(axis): a reshape to [prod(dims < axis), prod(dims ≥ axis)]."""

    ops = ("Flatten",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        couple_reshape(c, node.inputs[0], node.outputs[0])


class ReshapeRule(Rule):
    """Reshape: coupled like Flatten; changed target-shape entries must be rewritable constants."""

    ops = ("Reshape",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        for axis in couple_reshape(c, node.inputs[0], node.outputs[0]):
            if _shape_entry(node, axis) is None:
                c.freeze(node.outputs[0], axis, "target-shape entry is computed at run time")

    def rewrite(self, node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
        y = node.outputs[0]
        for axis in range(rank_or_zero(y)):
            gone = len(removed.get((id(y), axis), []))
            if gone:
                _rewrite_shape_entry(node, axis, y.shape[axis] - gone)


def _shape_entry(node: ir.Node, axis: int) -> tuple[ir.Node, int, int] | None:
    """(node, input index, position) holding the target size of ``axis``, or None if not constant.

    A one-element Concat piece computed at run time counts when the output's dim there is static
    (the legacy exporter reads ``E`` through ``Shape``): the rewrite puts a constant in its place."""
    shape = node.inputs[1]
    if constant(shape) is not None:
        return node, 1, axis
    concat = shape.producer()
    if concat is None or concat.op_type != "Concat":
        return None
    position = axis
    for index, piece in enumerate(concat.inputs):
        length = math.prod(piece.shape) if piece is not None and piece.shape is not None and all(isinstance(d, int) for d in piece.shape) else None
        if length is None:
            return None
        if position < length:
            known = constant(piece) is not None or (length == 1 and isinstance(node.outputs[0].shape[axis], int))
            return (concat, index, position) if known else None
        position -= length
    return None


def _rewrite_shape_entry(node: ir.Node, axis: int, size: int) -> None:
    holder, index, position = _shape_entry(node, axis)
    known = constant(holder.inputs[index])
    if known is None:  # a computed one-element piece of a static dim
        replace_input_with_constant(holder, index, np.array([size], dtype=np.int64), fresh_name(holder, f"pruned_shape{index}"))
    elif known.reshape(-1)[position] != -1:
        set_entries(holder, index, {position: size})
