"""Tensors between numpy, ONNX and torch: the element types the view runs, and the conversions both ways."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import torch

from onnxcompress.passes.training.untrainable import untrainable


DTYPES = {
    ir.DataType.FLOAT: torch.float32, ir.DataType.DOUBLE: torch.float64, ir.DataType.FLOAT16: torch.float16,
    ir.DataType.BFLOAT16: torch.bfloat16, ir.DataType.INT64: torch.int64, ir.DataType.INT32: torch.int32,
    ir.DataType.INT16: torch.int16, ir.DataType.INT8: torch.int8, ir.DataType.UINT8: torch.uint8, ir.DataType.BOOL: torch.bool,
}


def to_torch(array: object) -> torch.Tensor:
    """A numpy array (or tensor) as a tensor of its own: bfloat16 reinterpreted from its bits, a type torch has no
    tensor for (float8, int4, strings) declined in one line."""
    if isinstance(array, torch.Tensor):
        return array
    array = np.asarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(array).view(np.uint16).copy()).view(torch.bfloat16)
    try:
        return torch.from_numpy(np.array(array))
    except TypeError:
        raise untrainable(f"tensors of type {array.dtype} are not supported") from None


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as numpy holds them (bfloat16 widened to float32: numpy has no such type of its own)."""
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
