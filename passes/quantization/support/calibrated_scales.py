"""Calibrated activation scales for dynamically quantized MatMuls: the batch no longer changes the result.

ORT's dynamic quantization computes each activation's scale at run time over the whole batch, so a
sentence's embedding depends on which sentences share its batch. That matters wherever the same
input must always give the same vector (a search index built in batches, queried one by one).
One U8 scale per tensor, calibrated once by min-max, makes every batch size give the batch-1 result.
On all-MiniLM-L6-v2 that costs a little fidelity at batch 1 and nothing in latency (the
``activation_scales=calibrated`` rows of ``docs/benchmarks/bench_quantization.md``). Clipped ranges
(percentile, entropy, MSE) lost more cosine there, so min-max is the default.

Each ``DynamicQuantizeLinear`` becomes a ``QuantizeLinear`` with a constant scale. Each
``MatMulInteger → Cast → Mul(scale product) [→ Add(bias)]`` chain becomes one com.microsoft
``MatMulIntegerToFloat``. ORT has its own fusion for that chain, but it matches only a run-time
scale Mul, which its constant folding removes first. The chain then stays unfused and is 10% slower
at batch 8.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress.errors import UsageError
from onnxcompress.passes.initializers import add_initializer
from onnxcompress.passes.quantization.support.ort_bridge import Selection
from onnxcompress.passes.quantization.support.ranges import u8_scale_and_zero_point
from onnxcompress.passes.quantization.support.selection import fallback_candidates

MICROSOFT = "com.microsoft"


@dataclasses.dataclass(frozen=True)
class FrozenScales:
    """How many run-time quantizers became constant-scale ones, and how many MatMul chains were fused."""

    quantizers: int
    fused_matmuls: int


def freeze_activation_scales(proto: onnx.ModelProto, ranges: Mapping[str, tuple[float, float]]) -> tuple[onnx.ModelProto, FrozenScales]:
    """``proto`` with every ``DynamicQuantizeLinear`` given a constant scale from ``ranges``, its MatMuls fused."""
    model = ir.serde.deserialize_model(proto)
    graph = model.graph
    quantizers = [node for node in graph if node.op_type == "DynamicQuantizeLinear"]
    missing = sorted({node.inputs[0].name for node in quantizers} - set(ranges))
    if missing:
        raise UsageError(f"no calibrated range for {', '.join(missing[:3])} (a ranges_file written for other op_types or exclude?)")
    for node in quantizers:
        _quantize_with_constant_scale(graph, node, ranges[node.inputs[0].name])
    fused = sum(fuse_to_float_matmul(graph, node) for node in list(graph) if node.op_type == "MatMulInteger")
    if fused and MICROSOFT not in model.opset_imports:
        model.opset_imports[MICROSOFT] = 1
    return ir.serde.serialize_model(model), FrozenScales(len(quantizers), fused)


def _quantize_with_constant_scale(graph: ir.Graph, node: ir.Node, value_range: tuple[float, float]) -> None:
    quantized, scale_out, zero_point_out = node.outputs
    scale, zero_point = u8_scale_and_zero_point(*value_range)
    scale_value = add_initializer(graph, f"{scale_out.name}_calibrated", np.array(scale, np.float32))
    zero_point_value = add_initializer(graph, f"{zero_point_out.name}_calibrated", np.array(zero_point, np.uint8))
    quantize = ir.node("QuantizeLinear", [node.inputs[0], scale_value, zero_point_value], name=f"{node.name}_calibrated")
    replace_dynamic_quantizer(graph, node, quantize, scale_value, zero_point_value)


def replace_dynamic_quantizer(graph: ir.Graph, node: ir.Node, quantize: ir.Node, scale: ir.Value, zero_point: ir.Value) -> None:
    """Put ``quantize`` (inserted before ``node``) in place of a ``DynamicQuantizeLinear`` whose scale and zero point
    the consumers now read as the constants ``scale`` and ``zero_point``."""
    quantized, scale_out, zero_point_out = node.outputs
    graph.insert_before(node, quantize)
    scale_out.replace_all_uses_with(scale)
    zero_point_out.replace_all_uses_with(zero_point)
    quantized.replace_all_uses_with(quantize.outputs[0])
    quantize.outputs[0].name, quantize.outputs[0].type, quantize.outputs[0].shape = quantized.name, quantized.type, quantized.shape
    graph.remove(node, safe=True)


def fuse_to_float_matmul(graph: ir.Graph, matmul: ir.Node) -> bool:
    """Replace ``MatMulInteger → Cast → Mul(a_scale · b_scale) [→ Add(bias)]`` by ``MatMulIntegerToFloat``."""
    chain = _float_output_chain(matmul)
    if chain is None:
        return False
    cast, mul, scales, bias_add = chain
    a, b, a_zero_point, b_zero_point = matmul.inputs
    a_scale, b_scale = scales.inputs
    bias = [_other_input(bias_add, mul.outputs[0])] if bias_add is not None else []
    last = bias_add or mul
    fused = ir.node(
        "MatMulIntegerToFloat", [a, b, a_scale, b_scale, a_zero_point, b_zero_point, *bias],
        domain=MICROSOFT, name=f"{matmul.name}_to_float",
    )
    graph.insert_before(matmul, fused)
    out = last.outputs[0]
    out.replace_all_uses_with(fused.outputs[0], replace_graph_outputs=True)
    fused.outputs[0].name, fused.outputs[0].type, fused.outputs[0].shape = out.name, out.type, out.shape
    graph.remove([matmul, cast, mul, *([bias_add] if bias_add is not None else [])], safe=True)
    if not scales.outputs[0].uses():
        graph.remove(scales, safe=True)
    return True


def _float_output_chain(matmul: ir.Node) -> tuple[ir.Node, ir.Node, ir.Node, ir.Node | None] | None:
    """``(Cast, Mul, scale-product Mul, bias Add or None)`` after a MatMulInteger whose A has a constant scale."""
    if len(matmul.inputs) != 4 or any(v is None for v in matmul.inputs):
        return None
    cast = _only_consumer(matmul.outputs[0], "Cast")
    mul = cast and _only_consumer(cast.outputs[0], "Mul")
    if mul is None:
        return None
    scales = _other_input(mul, cast.outputs[0]).producer()
    if scales is None or scales.op_type != "Mul" or not all(_is_constant(v) for v in scales.inputs):
        return None
    a_scale, b_scale = scales.inputs
    if a_scale.const_value.size != 1 or b_scale.const_value.size not in (1, matmul.inputs[1].shape[-1]):
        return None
    add = _only_consumer(mul.outputs[0], "Add")
    bias = add and _other_input(add, mul.outputs[0])
    keep_bias = bias is not None and _is_constant(bias) and bias.shape == ir.Shape([matmul.inputs[1].shape[-1]])
    return cast, mul, scales, add if keep_bias else None


def _only_consumer(value: ir.Value, op_type: str) -> ir.Node | None:
    uses = value.uses()
    if len(uses) != 1 or value.is_graph_output():
        return None
    node = uses[0].node
    return node if node.op_type == op_type and node.domain == "" else None


def _other_input(node: ir.Node, value: ir.Value) -> ir.Value:
    first, second = node.inputs
    return second if first is value else first


def _is_constant(value: ir.Value) -> bool:
    return value.const_value is not None and not value.is_graph_input()


def matmul_activations(proto: onnx.ModelProto, selection: Selection) -> list[str]:
    """The activations (first inputs) of the MatMul, Gemm and Attention nodes with constant weights ``selection`` quantizes."""
    quantized = set(fallback_candidates(proto, selection))
    weights = {t.name for t in proto.graph.initializer}
    return list(dict.fromkeys(
        node.input[0] for node in proto.graph.node
        if node.name in quantized and node.op_type != "Conv" and node.input[0] not in weights
    ))
