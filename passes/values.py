"""What a fusion rule may rely on: constants that cannot be overridden, and static shapes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's array when it is a true constant (an overridable graph input is not)."""
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value.const_value.numpy()


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape when every dimension is a known integer."""
    if value is None or value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return tuple(value.shape)


def rank(value: ir.Value | None) -> int | None:
    """The value's rank when known."""
    return None if value is None or value.shape is None else len(value.shape)


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
