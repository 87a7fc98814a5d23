"""Which nodes a quantization pass touches, and which can go back to FP32."""

from __future__ import annotations

import onnx

from onnxcompress.passes.quantization.support.ort_bridge import Selection
from onnxcompress.passes.quantization.support.selection import FLOAT_BRANCH_SUFFIX, fallback_candidates, select

ATTENTION_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
scores (float[N, 4, 8] x) => (float[N, 4, 8] y)
<float[8, 8] wq = {0.0}, float[8, 8] wk = {0.0}>
{
    q = MatMul (x, wq)
    k = MatMul (x, wk)
    kt = Transpose <perm = [0, 2, 1]> (k)
    s = MatMul (q, kt)
    y = MatMul (s, q)
}
"""


def named(text: str) -> onnx.ModelProto:
    proto = onnx.parser.parse_model(text)
    for index, node in enumerate(proto.graph.node):
        node.name = f"{node.op_type.lower()}_{index}"
    return proto


def test_fallback_candidates_are_the_layers_with_constant_weights() -> None:
    proto = named(ATTENTION_TEXT)
    assert fallback_candidates(proto, Selection(op_types=["MatMul"])) == ["matmul_0", "matmul_1"]
    assert fallback_candidates(proto, Selection(op_types=["MatMul"], exclude=["matmul_1"])) == ["matmul_0"]


def test_selection_leaves_out_the_excluded_nodes_and_fp32_branches() -> None:
    proto = named(ATTENTION_TEXT)
    proto.graph.node[3].name = f"up{FLOAT_BRANCH_SUFFIX}"
    assert select(proto, ["MatMul"], ["matmul_0"]).exclude == ["matmul_0", f"up{FLOAT_BRANCH_SUFFIX}"]
