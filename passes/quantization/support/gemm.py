"""Gemm → MatMul (+ Add) for dynamic quantization, whose ORT quantizer has no Gemm rule.

Our ``fuse`` turns MatMul + bias Add into Gemm; ORT's IntegerOps quantizer would then leave those
layers in FP32. Splitting a Gemm with a constant B back into MatMul + Add lets them be quantized,
and ORT's optimizer fuses the result into ``DynamicQuantizeMatMul`` with its bias.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper


def split_gemms(proto: onnx.ModelProto, exclude: set[str]) -> list[str]:
    """Rewrite (in place) every plain Gemm with constant B (alpha = beta = 1, no transA) not in ``exclude``; return their names."""
    weights = {t.name: t for t in proto.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    split = []
    for node in proto.graph.node:
        if node.op_type == "Gemm" and node.name not in exclude and _splittable(node, weights):
            nodes.extend(_as_matmul_add(node, weights, proto.graph))
            split.append(node.name)
        else:
            nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return split


def _splittable(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
    return plain and node.input[1] in weights


def _as_matmul_add(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    weight = node.input[1]
    if any(a.name == "transB" and a.i for a in node.attribute):
        transposed = numpy_helper.to_array(weights[weight]).T.copy()
        weight = f"{node.input[1]}_transposed_{node.name}"
        graph.initializer.append(numpy_helper.from_array(transposed, weight))
    has_bias = len(node.input) > 2 and node.input[2]
    product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
    result = [helper.make_node("MatMul", [node.input[0], weight], [product], name=node.name)]
    if has_bias:
        result.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
    return result
