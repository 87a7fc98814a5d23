"""What every op reads from its node: attributes with their ONNX defaults, integer inputs as Python values, axes;
and the two adapters that make a torch function an op."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx_ir as ir
import torch


Op = Callable[..., Any]


def attr_ints(node: ir.Node, name: str, default: Any = None) -> Any:
    """The node's ints attribute ``name`` (``default`` when absent)."""
    return node.attributes.get_ints(name, default)


def attr_int(node: ir.Node, name: str, default: int) -> int:
    """The node's int attribute ``name`` (``default`` when absent)."""
    return node.attributes.get_int(name, default)


def attr_float(node: ir.Node, name: str, default: float) -> float:
    """The node's float attribute ``name`` (``default`` when absent)."""
    return node.attributes.get_float(name, default)


def int_values(tensor: torch.Tensor | None) -> list[int] | None:
    """An integer input (a shape, axes, bounds) as Python ints; None when omitted."""
    return None if tensor is None else [int(v) for v in tensor.reshape(-1).tolist()]


def positive_axis(axis: int, rank: int) -> int:
    """``axis`` counted from the front of a rank-``rank`` tensor."""
    return axis + rank if axis < 0 else axis


def unary(function: Callable[[torch.Tensor], torch.Tensor]) -> Op:
    """An op of one input that ``function`` computes alone (no attributes)."""
    return lambda node, opset, x: function(x)


def binary(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Op:
    """An op of two inputs that ``function`` computes alone (no attributes)."""
    return lambda node, opset, a, b: function(a, b)


def axes_of(node, opset, axes_input, since: int) -> list[int] | None:
    """A node's axes: from its input from opset ``since`` on, from its attribute before."""
    return int_values(axes_input) if opset >= since else attr_ints(node, "axes", None)
