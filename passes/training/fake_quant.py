"""Simulated INT8 in PyTorch: what lets a QDQ graph train (quantization-aware recovery).

A quantized value is carried as a float tensor holding its integers, so gradients can flow: rounding
passes the gradient straight through (the straight-through estimator), clamping to the type's range
stops it. ``QuantizeLinear`` and ``DequantizeLinear`` compute what ONNX Runtime's reference kernels
do (round half to even, saturate), so an untrained QDQ graph gives ORT's outputs; a quantized weight
trains as its float value and is rounded again at every step (``quantize``).
"""

from __future__ import annotations

import onnx_ir as ir
import torch

from onnxcompress.passes.training.untrainable import untrainable

RANGES = {
    ir.DataType.INT8: (-128, 127), ir.DataType.UINT8: (0, 255), ir.DataType.INT16: (-32768, 32767),
    ir.DataType.UINT16: (0, 65535), ir.DataType.INT32: (-(2**31), 2**31 - 1),
}
TORCH_RANGES = {torch.int8: RANGES[ir.DataType.INT8], torch.uint8: RANGES[ir.DataType.UINT8],
                torch.int16: RANGES[ir.DataType.INT16], torch.int32: RANGES[ir.DataType.INT32]}


def per_axis(parameter: torch.Tensor, rank: int, axis: int) -> torch.Tensor:
    """A scale or zero point shaped to broadcast along ``axis`` of a rank-``rank`` tensor (scalars as they are)."""
    if parameter.dim() == 0 or parameter.numel() == 1:
        return parameter.reshape(())
    axis = axis + rank if axis < 0 else axis
    return parameter.reshape([-1 if d == axis else 1 for d in range(rank)])


def round_through(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded half to even, with the gradient of the identity."""
    return x + (torch.round(x) - x).detach()


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, axis: int,
             bounds: tuple[int, int]) -> torch.Tensor:
    """``QuantizeLinear``: the integers of ``x`` (as floats), saturated to ``bounds``; differentiable in ``x``."""
    s = per_axis(scale.float(), x.dim(), axis)
    z = per_axis(zero_point.float(), x.dim(), axis) if zero_point is not None else 0.0
    return torch.clamp(round_through(x / s) + z, *bounds)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, axis: int) -> torch.Tensor:
    """``DequantizeLinear``: the float value of the integers ``q``."""
    s = per_axis(scale.float(), q.dim(), axis)
    z = per_axis(zero_point.float(), q.dim(), axis) if zero_point is not None else 0.0
    return (q.float() - z) * s


def bounds_of(zero_point: torch.Tensor | None, node: ir.Node) -> tuple[int, int]:
    """The integer range a ``QuantizeLinear`` saturates to: its zero point's type, else ``output_dtype``, else uint8."""
    ranges, target = (TORCH_RANGES, zero_point.dtype) if zero_point is not None else (
        RANGES, ir.DataType(node.attributes.get_int("output_dtype", ir.DataType.UINT8)))
    bounds = ranges.get(target)
    if bounds is None:
        raise untrainable(f"{node.op_type} to {target} is not supported")
    return bounds


def quantize_linear(node: ir.Node, opset: int, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None) -> torch.Tensor:
    """The ``QuantizeLinear`` op on a float input."""
    refuse_blocks(node)
    return quantize(x, scale, zero_point, node.attributes.get_int("axis", 1), bounds_of(zero_point, node))


def dequantize_linear(node: ir.Node, opset: int, q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None) -> torch.Tensor:
    """The ``DequantizeLinear`` op on integers (a quantized weight, or a ``QuantizeLinear``'s output)."""
    refuse_blocks(node)
    return dequantize(q, scale, zero_point, node.attributes.get_int("axis", 1))


def refuse_blocks(node: ir.Node) -> None:
    """Blocked quantization (``block_size``) is not simulated."""
    if node.attributes.get_int("block_size", 0):
        raise untrainable(f"{node.op_type} with block_size (blocked quantization) is not simulated")
