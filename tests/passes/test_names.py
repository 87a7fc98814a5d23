"""Names that survive rewrites: a fused node takes the first replaced node's name and records them all."""

from __future__ import annotations

import collections

from onnxcompress import io
from onnxcompress.passes import Fuse
from onnxcompress.passes.names import ORIGINAL_NAMES, names_of, original_names
from onnxcompress.passes.quantization.support.integer_friendly import fold_batch_norms


def test_a_fused_node_keeps_the_first_name_and_records_every_replaced_one(exported_chain, assert_exact_rewrite) -> None:
    before = exported_chain()
    exported = [node.name for node in before.graph]
    after = io.clone(before)
    Fuse()(after)
    by_name = {node.name: node for node in after.graph}
    assert [(n.op_type, n.name) for n in after.graph] == [("Conv", "/stem/stem.0/Conv"), ("Relu", "/stem/stem.2/Relu"), ("Gemm", "/fc/MatMul")]
    assert original_names(by_name["/stem/stem.0/Conv"]) == exported[:3]  # folded BN, then the bias Add: names accumulate
    assert names_of(by_name["/fc/MatMul"]) == ["/fc/MatMul", "/fc/Add"]
    assert original_names(by_name["/stem/stem.2/Relu"]) == [] and ORIGINAL_NAMES not in by_name["/stem/stem.2/Relu"].metadata_props
    assert not any(key.startswith("onnxcompress.names.") for node in after.graph for key in node.metadata_props)
    assert_exact_rewrite(before, after)


def test_recorded_names_survive_saving(exported_chain, tmp_path) -> None:
    model = exported_chain()
    Fuse()(model)
    reloaded = io.load(io.save(model, tmp_path / "fused.onnx"))
    assert {node.name: names_of(node) for node in reloaded.graph} == {node.name: names_of(node) for node in model.graph}


def test_bn_folding_for_quantization_keeps_the_conv_name(exported_chain) -> None:
    model = exported_chain()
    exported = [node.name for node in model.graph]
    assert fold_batch_norms(model) == 1
    conv = next(node for node in model.graph if node.op_type == "Conv")
    assert names_of(conv) == exported[:2]


def test_a_name_is_not_taken_twice(exported_chain) -> None:
    """A replaced node's name still in use elsewhere is not given to the new node (names stay unique)."""
    model = exported_chain()
    relu = next(node for node in model.graph if node.op_type == "Relu")
    relu.name = "/stem/stem.0/Conv"
    conv = next(node for node in model.graph if node.op_type == "Conv")
    conv.name = "/stem/stem.0/Conv"
    Fuse()(model)
    counts = collections.Counter(node.name for node in model.graph)
    assert counts["/stem/stem.0/Conv"] == 1
    fused = next(node for node in model.graph if node.op_type == "Conv")
    assert fused.name != "/stem/stem.0/Conv" and "/stem/stem.0/Conv" in names_of(fused)
