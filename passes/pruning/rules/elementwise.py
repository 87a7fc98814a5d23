"""Elementwise ops: unary activations, broadcasting binary ops (PRelu included), Softmax.

Broadcasting is applied exactly as ONNX defines it: operand axes align from the right; an axis of
size 1 facing a larger one is broadcast (not coupled: a mask or per-tensor constant stays as is),
any other axis couples with the output's. So a residual Add couples both branches, and a constant
operand is sliced only when it spans the full channel axis.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.values import rank_or_zero

UNARY = (
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Mish", "Gelu", "Erf", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil",
    "Round", "Sign", "Sin", "Cos", "Identity", "Cast", "Not", "IsNaN", "IsInf", "ThresholdedRelu", "Shrink",
)
BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Mod", "And", "Or", "Xor", "Equal", "Less", "LessOrEqual",
          "Greater", "GreaterOrEqual", "BitShift")
VARIADIC = ("Sum", "Mean", "Max", "Min", "Where")


def couple_broadcast(c: Coupler, operand: ir.Value, y: ir.Value) -> None:
    """Couple ``operand``'s axes with ``y``'s under numpy broadcasting."""
    r, ry = rank_or_zero(operand), rank_or_zero(y)
    if operand.shape is None or r > ry:
        raise Refused("operand rank unknown")
    for axis in range(r):
        y_axis = axis + ry - r
        if operand.shape[axis] == 1 and y.shape[y_axis] != 1:
            c.handle(operand, axis)
        else:
            c.same(operand, axis, y, y_axis)


class UnaryRule(Rule):
    """y = f(x) elementwise (extra inputs such as Clip's bounds must be scalars)."""

    ops = (*UNARY, "Clip", "Dropout")

    def couple(self, node: ir.Node, c: Coupler) -> None:
        if any(rank_or_zero(v) for v in node.inputs[1:] if v is not None):
            raise Refused("non-scalar extra input")
        if any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            raise Refused("extra outputs are used")
        x, y = node.inputs[0], node.outputs[0]
        if rank_or_zero(x) != rank_or_zero(y):
            raise Refused("rank unknown")
        for axis in range(rank_or_zero(x)):
            c.same(x, axis, y, axis)


class BroadcastRule(Rule):
    """Binary and variadic elementwise ops under broadcasting (Add, Mul, Where, Max, PRelu's slope...)."""

    ops = (*BINARY, *VARIADIC, "PRelu")

    def couple(self, node: ir.Node, c: Coupler) -> None:
        y = node.outputs[0]
        for operand in node.inputs:
            if operand is not None:
                couple_broadcast(c, operand, y)


class SoftmaxRule(Rule):
    """Softmax family: every axis but the normalised one(s) (all from ``axis`` before opset 13) couples."""

    ops = ("Softmax", "LogSoftmax", "Hardmax")

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, y = node.inputs[0], node.outputs[0]
        r = rank_or_zero(x)
        opset = node.graph.opset_imports.get("", 13) if node.graph is not None else 13
        axis = node.attributes.get_int("axis", -1 if opset >= 13 else 1) % max(r, 1)
        for other in range(r):
            if other == axis or (opset < 13 and other > axis):
                c.freeze(x, axis, "normalised axis")
                c.freeze(y, axis, "normalised axis")
            else:
                c.same(x, other, y, other)
