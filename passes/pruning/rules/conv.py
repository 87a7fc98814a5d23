"""Conv and ConvTranspose: filters couple to output channels, weight slices to input channels.

Plain convolutions (``group=1``) separate the input-channel group from the output-channel group.
Depthwise convolutions (``group`` = channels, one filter each) tie input, output, weight and bias
together and get ``group`` rewritten. Other grouped convolutions (RegNet's, ResNeXt's) keep their groups:
position j of every group's input channels goes together (they share weight slice j), and so does
filter j of every group, so each group keeps as many of each as the others. Grouped transposed
convolutions are refused.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.values import rank_or_zero, static_shape


def _weight_and_group(node: ir.Node) -> tuple[ir.Value, int]:
    """The weight (stored, or computed from storage such as a Cast from float16) and the group count."""
    weight = node.inputs[1]
    if weight is None or weight.is_graph_input():
        raise Refused("weight is a graph input")
    if weight_shape(weight) is None:
        raise Refused("weight shape unknown")
    return weight, node.attributes.get_int("group", 1)


def weight_shape(weight: ir.Value) -> tuple[int, ...] | None:
    """A conv weight's shape when every dim is known: a stored weight's own, else the inferred one (a weight
    cast from float16 storage)."""
    return tuple(weight.const_value.shape) if weight.const_value is not None else static_shape(weight)


def _couple_batch(node: ir.Node, c: Coupler) -> None:
    x, y = node.inputs[0], node.outputs[0]
    if rank_or_zero(x) and rank_or_zero(y):
        c.same(x, 0, y, 0)


def is_depthwise(weight: ir.Value, group: int) -> bool:
    """One single-channel filter per group (channel multiplier 1)."""
    shape = weight_shape(weight)
    return group > 1 and shape is not None and shape[0] == group and shape[1] == 1


def is_depthwise_conv(node: ir.Node) -> bool:
    """A Conv with one constant single-channel filter per group (MobileNet's spatial convs)."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2 or node.inputs[1] is None:
        return False
    return node.inputs[1].const_value is not None and is_depthwise(node.inputs[1], node.attributes.get_int("group", 1))


class ConvRule(Rule):
    """Conv: W[o, i/g, k...]; output channel o ↔ W row o ↔ B[o]; input channel i ↔ W[:, i]."""

    ops = ("Conv",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        weight, group = _weight_and_group(node)
        x, y = node.inputs[0], node.outputs[0]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        _couple_batch(node, c)
        if group == 1:
            c.contract(x, 1, weight, 1)
        elif is_depthwise(weight, group):
            c.same(weight, 0, x, 1)
            c.handle(weight, 1)
        else:
            c.grouped_contract(x, 1, weight, 1, group)
            c.equal_blocks(weight, 0, group)
        c.same(weight, 0, y, 1)
        if bias is not None:
            c.same(weight, 0, bias, 0)

    def rewrite(self, node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
        _rewrite_group(node, removed)


class ConvTransposeRule(Rule):
    """ConvTranspose: W[i, o/g, k...]; input channel i ↔ W row i, output channel o ↔ W[:, o] ↔ B[o]."""

    ops = ("ConvTranspose",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        weight, group = _weight_and_group(node)
        if "output_shape" in node.attributes:
            raise Refused("explicit output_shape")
        x, y = node.inputs[0], node.outputs[0]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        _couple_batch(node, c)
        if group == 1:
            c.contract(x, 1, weight, 0)
            c.same(weight, 1, y, 1)
            if bias is not None:
                c.same(weight, 1, bias, 0)
        elif is_depthwise(weight, group):
            c.same(weight, 0, x, 1)
            c.same(weight, 0, y, 1)
            c.handle(weight, 1)
            if bias is not None:
                c.same(weight, 0, bias, 0)
        else:
            raise Refused(f"grouped transposed convolution (group={group}) that is not depthwise")

    def rewrite(self, node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
        _rewrite_group(node, removed)


def _rewrite_group(node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
    """A depthwise convolution keeps one group per remaining channel (other grouped ones keep their groups)."""
    group = node.attributes.get_int("group", 1)
    if is_depthwise(node.inputs[1], group):
        node.attributes["group"] = ir.AttrInt64("group", group - len(removed.get((id(node.outputs[0]), 1), [])))
