"""What a pass may rely on about a graph value: its constant array, its rank, its static shape.

One reading for every pass family, so fusion, pruning and quantization agree on what is a constant
(an initializer or a Constant node's output, never an overridable graph input).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx_ir as ir

FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})


def input_at(node: ir.Node, index: int) -> ir.Value | None:
    """The node's input ``index``, or None when it is omitted (an empty name, or fewer inputs)."""
    return node.inputs[index] if index < len(node.inputs) else None


def is_constant(value: ir.Value | None) -> bool:
    """Whether the value is a true constant (an initializer or a Constant node's output, not an
    overridable graph input); its data is not read."""
    if value is None or value.is_graph_input():
        return False
    producer = value.producer()
    return value.const_value is not None or (producer is not None and producer.op_type == "Constant" and "value" in producer.attributes)


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's array when it is a true constant (see ``is_constant``), else None."""
    if not is_constant(value):
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    return value.producer().attributes["value"].as_tensor().numpy()


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape when every dimension is a known integer."""
    if value is None or value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return tuple(value.shape)


def rank(value: ir.Value | None) -> int | None:
    """The value's rank when known, else None."""
    return None if value is None or value.shape is None else len(value.shape)


def rank_or_zero(value: ir.Value | None) -> int:
    """The value's rank, 0 when unknown: a loop over its axes then visits none (what pruning's rules want)."""
    known = rank(value)
    return 0 if known is None else known


def last_dim(value: ir.Value | None) -> int | None:
    """The value's last dimension when it is a known integer."""
    if value is None or value.shape is None or len(value.shape) == 0:
        return None
    dim = value.shape[-1]
    return dim if isinstance(dim, int) else None


def same_dim(a: int | ir.SymbolicDim | None, b: int | ir.SymbolicDim | None) -> bool:
    """Whether two dimensions are known to be equal: the same integer, or the same named symbol."""
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return a is not None and b is not None and a.value is not None and a.value == b.value


RESHAPING = ("Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten")  # move or retype values, compute nothing


def behind_reshapes(value: ir.Value, ops: Collection[str] = RESHAPING) -> ir.Value:
    """The value ``value`` is a cast or reshape of (through any number of ``ops``, ``RESHAPING`` by default, each
    passing on values of its first input): what computed it."""
    while (producer := value.producer()) is not None and producer.op_type in ops:
        value = producer.inputs[0]
    return value


def channel_vector(operand: np.ndarray, out_rank: int, channels: int) -> np.ndarray | None:
    """The vector of one value per channel (axis 1 of an output of ``out_rank`` dims and ``channels`` channels) that
    ``operand`` amounts to when broadcast against that output (a bias added, a scale multiplied), or None when it is not one."""
    if operand.ndim > out_rank:
        return None
    padded = (1,) * (out_rank - operand.ndim) + operand.shape
    if padded[1] not in (1, channels) or any(d != 1 for i, d in enumerate(padded) if i != 1):
        return None
    return np.broadcast_to(operand.reshape(-1), (channels,)).copy()
