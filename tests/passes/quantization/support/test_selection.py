"""Which nodes a quantization pass touches, and which can go back to FP32."""

from __future__ import annotations

import onnx
import pytest

from onnxcompress.errors import UsageError
from onnxcompress.passes.quantization.support.ort_bridge import Selection
from onnxcompress.passes.quantization.support.selection import (
    FLOAT_BRANCH_SUFFIX,
    fallback_candidates,
    refuse_layers_only_in_subgraphs,
    select,
    weight_sizes,
)

from ....onnxcompress.test_generation import decoder, merged_decoder

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


MERGED_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
merged (bool use_cache_branch, float[N, 8] x) => (float[N, 8] y)
<float[8, 8] w = {0.0}, float[8, 8] v = {0.0}>
{
    y = If (use_cache_branch) <
        then_branch = cached () => (float[N, 8] a) {
            h = MatMul (x, w)
            a = MatMul (h, v)
        },
        else_branch = first () => (float[N, 8] b) {
            b = MatMul (x, w)
        }
    >
}
"""


def test_a_merged_decoders_layers_in_its_branches_can_go_back_to_fp32() -> None:
    # the fallback had no candidate in a merged decoder (every layer in a branch): "over budget with 0 layers kept in FP32"
    proto = onnx.parser.parse_model(MERGED_TEXT)
    branches = proto.graph.node[0].attribute
    for attribute in branches:
        for index, node in enumerate(attribute.g.node):
            node.name = f"{attribute.name}_{index}"
    candidates = fallback_candidates(proto, Selection(op_types=["MatMul"]))
    assert candidates == ["then_branch_0", "then_branch_1", "else_branch_0"]
    assert weight_sizes(proto, candidates) == {name: 64 for name in candidates}



def test_a_model_whose_weighted_layers_are_all_in_branches_is_refused_in_one_line():
    # a merged decoder's layers are all in its If branches, which ORT's static quantizer does not enter: it exited 0
    # having quantized nothing
    with pytest.raises(UsageError, match=r"^all 2 MatMul nodes are inside If/Loop branches .*quantize-dynamic quantizes them there$"):
        refuse_layers_only_in_subgraphs(merged_decoder(), ["MatMul", "Add"])
    refuse_layers_only_in_subgraphs(merged_decoder(), ["Conv"])  # no layer of those types: nothing to refuse
    refuse_layers_only_in_subgraphs(decoder(), ["MatMul"])  # its layers are in the main graph
