"""Per-token-scaled activations quantized row by row in one ``QuantizeLinear``: ``scale-tokens`` without its Mul pass.

``scale-tokens`` divides each row of an activation by its peak ``r`` (``Mul`` by ``1 / r``) so that
ORT's per-tensor dynamic quantizer sees rows of one range. That Mul is a full pass over the
activation, and the quantizer then makes two more (min-max, then quantize). The scaled rows' range
is known before any data is seen ([-1, 1], or [-1/4, 1] for a one-sided activation: see
``scale_tokens.ONE_SIDED_LOW``), and from opset 21 ``QuantizeLinear`` takes one scale per block of
a row (``block_size``). So ``QuantizeLinear(x, r · c)`` with a constant ``c`` writes the same U8
rows in one pass, and each MatMul becomes a ``MatMulIntegerToFloat`` with the constant activation
scale ``c``; the outputs are multiplied back by ``r`` as before. ORT's tools have no per-row
activation quantizer. Measured on one MiniLM FFN output MatMul at batch 8 × 128 tokens (1536 → 384):
0.91 ms against 1.08 ms for the Mul + ``DynamicQuantizeMatMul`` form, at the same error (the whole
all-MiniLM-L6-v2 recipe: ``docs/measured.md``). Folding the multiply-back into the MatMul too
(ORT's kernel accepts a per-row activation scale, outside the op's spec, and then scales the bias
with it) gained nothing measurable at batch 8 and was left out.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.passes.initializers import add_initializer
from onnxcompress.passes.quantization.support.calibrated_scales import MICROSOFT, fuse_to_float_matmul, replace_dynamic_quantizer
from onnxcompress.passes.quantization.support.ranges import u8_scale_and_zero_point
from onnxcompress.passes.quantization.scale_tokens import ONE_SIDED_LOW

BLOCKED_QUANTIZE = 21  # QuantizeLinear takes block_size (one scale per block of an axis) from opset 21


@dataclasses.dataclass(frozen=True)
class RowScaledInput:
    """An activation ``x`` that a MatMul reads as ``x / scale``, ``scale`` being one value per row."""

    activation: ir.Value
    scale: ir.Value
    symmetric: bool


def quantize_scaled_rows(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``proto`` with every dynamic quantizer of a ``scale-tokens`` activation replaced by a per-row
    ``QuantizeLinear`` and its MatMuls fused; the count replaced (0, model unchanged, below opset 21)."""
    model = ir.serde.deserialize_model(proto)
    if io.default_opset(model) < BLOCKED_QUANTIZE:
        return proto, 0
    graph = model.graph
    replaced = 0
    for node in [n for n in graph if n.op_type == "DynamicQuantizeLinear"]:
        scaled = row_scaled_input(node.inputs[0])
        if scaled is None:
            continue
        matmuls = [use.node for use in node.outputs[0].uses()]
        _quantize_rows(graph, node, scaled)
        for matmul in matmuls:
            fuse_to_float_matmul(graph, matmul)
        replaced += 1
    if not replaced:
        return proto, 0
    model.opset_imports.setdefault(MICROSOFT, 1)
    return ir.serde.serialize_model(model), replaced


def row_scaled_input(value: ir.Value) -> RowScaledInput | None:
    """``scale-tokens``' ``x · Reciprocal(Max(ReduceMax(|x| or x, last axis), floor))`` behind ``value``, or None.

    Without the ``Abs`` the rows are taken to stay above ``-ONE_SIDED_LOW``: scale-tokens sets the floor so
    (from the calibration data) when it finds the activation one-sided.
    """
    scaled = value.producer()
    if scaled is None or scaled.op_type != "Mul" or scaled.domain != "":
        return None
    activation, inverse = scaled.inputs
    reciprocal = inverse.producer()
    if reciprocal is None or reciprocal.op_type != "Reciprocal":
        return None
    scale = reciprocal.inputs[0]
    bounded = scale.producer()
    if bounded is None or bounded.op_type != "Max" or len(bounded.inputs) != 2 or bounded.inputs[1].const_value is None:
        return None
    peak = bounded.inputs[0].producer()
    if peak is None or peak.op_type != "ReduceMax" or not _reduces_last_axis(peak):
        return None
    source = peak.inputs[0]
    symmetric = source.producer() is not None and source.producer().op_type == "Abs" and source.producer().inputs[0] is activation
    if not (symmetric or source is activation) or not isinstance(_last_dim(activation), int):
        return None
    return RowScaledInput(activation, scale, symmetric)


def _reduces_last_axis(node: ir.Node) -> bool:
    """True for a ReduceMax over the last axis alone, keeping it (axes given as input from opset 18, else attribute)."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = node.inputs[1].const_value.numpy().tolist() if node.inputs[1].const_value is not None else None
    else:
        axes = node.attributes.get_ints("axes", None)
    shape = node.inputs[0].shape
    last = {-1} | ({shape.rank() - 1} if shape is not None else set())
    return node.attributes.get_int("keepdims", 1) == 1 and axes is not None and len(axes) == 1 and axes[0] in last


def _last_dim(value: ir.Value) -> int | ir.SymbolicDim | None:
    return None if value.shape is None or value.shape.rank() == 0 else value.shape[-1]


def _quantize_rows(graph: ir.Graph, node: ir.Node, scaled: RowScaledInput) -> None:
    """Replace ``node`` by ``QuantizeLinear(x, scale · step, zero point)`` with one block per row."""
    low = -1.0 if scaled.symmetric else -ONE_SIDED_LOW
    step, zero_point = u8_scale_and_zero_point(low, 1.0)
    divided = node.inputs[0]
    step_value = add_initializer(graph, f"{node.name}_row_step", np.array(step, np.float32))
    zero_point_value = add_initializer(graph, f"{node.name}_row_zero_point", np.array(zero_point, np.uint8))
    one_row = add_initializer(graph, f"{node.name}_row_zero_point_1", np.full([1] * scaled.activation.shape.rank(), zero_point, np.uint8))
    row_steps = ir.node("Mul", [scaled.scale, step_value], name=f"{node.name}_row_steps")
    shape = ir.node("Shape", [scaled.scale], name=f"{node.name}_row_shape")
    row_zero_points = ir.node("Expand", [one_row, shape.outputs[0]], name=f"{node.name}_row_zero_points")
    quantize = ir.node(
        "QuantizeLinear", [scaled.activation, row_steps.outputs[0], row_zero_points.outputs[0]],
        attributes={"axis": -1, "block_size": int(_last_dim(scaled.activation))}, name=f"{node.name}_rows",
    )
    graph.insert_before(node, [row_steps, shape, row_zero_points])
    replace_dynamic_quantizer(graph, node, quantize, step_value, zero_point_value)
    _drop_division(graph, divided)


def _drop_division(graph: ir.Graph, divided: ir.Value) -> None:
    """Remove ``x · Reciprocal(scale)`` once no other node reads it (the scale itself stays: outputs are multiplied back)."""
    if divided.uses() or divided.is_graph_output():
        return
    mul = divided.producer()
    inverse = mul.inputs[1]
    graph.remove(mul, safe=True)
    if not inverse.uses() and not inverse.is_graph_output():
        graph.remove(inverse.producer(), safe=True)
