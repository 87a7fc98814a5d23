"""Multiply-accumulate count of the heavy ops (Conv, ConvTranspose, Gemm, MatMul), for the report.

Run-time dims (batch, sequence) count as 1, so the figure is per sample (per token for text);
other ops are ignored — they are a rounding error next to these in the models channel removal
targets. Needs static shapes (run shape inference first).
"""

from __future__ import annotations

import math

import onnx_ir as ir


def _dims(value: ir.Value | None) -> list[int] | None:
    if value is None or value.shape is None:
        return None
    return [d if isinstance(d, int) else 1 for d in value.shape]


def node_macs(node: ir.Node) -> int:
    """MACs of one node (0 for ops not counted or shapes unknown)."""
    y = _dims(node.outputs[0]) if node.outputs else None
    if y is None:
        return 0
    if node.op_type in ("Conv", "ConvTranspose"):
        w = _dims(node.inputs[1])
        x = _dims(node.inputs[0])
        if w is None or x is None:
            return 0
        kernel = math.prod(w[1:])
        if node.op_type == "ConvTranspose":
            return math.prod(x) * w[1] * math.prod(w[2:])
        return math.prod(y) * kernel
    if node.op_type in ("Gemm", "MatMul"):
        a = _dims(node.inputs[0])
        if a is None:
            return 0
        transposed = node.op_type == "Gemm" and node.attributes.get_int("transA", 0)
        return math.prod(y) * (a[0] if transposed else a[-1])
    return 0


def model_macs(model: ir.Model) -> int:
    """Total MACs of the main graph's Conv/ConvTranspose/Gemm/MatMul nodes."""
    return sum(node_macs(node) for node in model.graph)
