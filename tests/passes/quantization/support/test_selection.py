"""Which nodes a quantization pass touches, and which can go back to FP32."""

from __future__ import annotations

import onnx
import pytest

from onnxcompress.errors import UsageError
from onnxcompress.passes.quantization.support.ort_bridge import Selection
from onnxcompress.passes.quantization.support.selection import fallback_candidates, matching_names, select

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


def test_exclude_patterns_match_names_and_a_pattern_matching_nothing_is_an_error() -> None:
    assert matching_names(["a/q", "a/k", "b/q"], ["a/*", "*/q"]) == ["a/q", "a/k", "b/q"]
    assert select(named(ATTENTION_TEXT), ["MatMul"], ["matmul_[01]"]).exclude == ["matmul_0", "matmul_1"]
    with pytest.raises(UsageError, match="matches no node"):
        matching_names(["a"], ["z*"])
