"""cleanup: dead code, identities, duplicates and unused inputs go; the signature stays."""

from __future__ import annotations

import itertools

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress.passes import Cleanup

REDUNDANT = """
<ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
g (float[2, 3] x) => (float[2, 3] y, float[2, 3] z) <float[3] a = {1, 2, 3}, float[3] b = {1, 2, 3}, float[3] unused = {0, 0, 0}> {
    i = Identity(x)
    p = Add(i, a)
    q = Add(i, b)
    dead = Relu(x)
    r = Add(x, a)
    s = Add(x, a)
    y = Mul(p, q)
    z = Sub(r, s)
}
"""

IDENTITY_OUTPUT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y, float[2] z) {
    y = Identity(x)
    z = Relu(x)
}
"""

UNUSED_INITIALIZER_INPUTS = """
<ir_version: 3, opset_import: ["" : 9]>
g (float[2] x, float[2] w, float[2] spare, float[2] extra) => (float[2] y) <float[2] w = {1, 2}, float[2] spare = {3, 4}> {
    y = Add(x, w)
}
"""


@pytest.fixture
def cleaned(rewrite_text):
    """``cleaned(text) -> (before, after, pass)``: the model parsed from ONNX text, and a cleaned copy."""
    return lambda text: rewrite_text(Cleanup(), text)


def test_identities_duplicates_and_dead_nodes_go(assert_exact_rewrite, cleaned):
    before, after, cleanup = cleaned(REDUNDANT)
    ops = [node.op_type for node in after.graph]
    assert ops.count("Identity") == 0 and "Relu" not in ops
    assert ops.count("Add") == 2  # the two duplicate initializers merged, then the two twin Adds
    assert list(after.graph.initializers) == ["a"]
    assert "com.example" not in after.opset_imports
    assert cleanup.details["nodes_removed"] == len(before.graph) - len(after.graph)
    assert_exact_rewrite(before, after)


def test_identity_from_input_to_output_is_kept(assert_exact_rewrite, cleaned):
    before, after, _ = cleaned(IDENTITY_OUTPUT)
    assert [v.name for v in after.graph.outputs] == ["y", "z"]
    assert [node.op_type for node in after.graph] == ["Identity", "Relu"]
    assert_exact_rewrite(before, after)


def test_only_unused_initializer_inputs_are_dropped(assert_exact_rewrite, cleaned):
    before, after, _ = cleaned(UNUSED_INITIALIZER_INPUTS)
    assert [v.name for v in after.graph.inputs] == ["x", "w", "extra"]
    assert list(after.graph.initializers) == ["w"]
    assert [v.name for v in after.graph.outputs] == ["y"]
    assert_exact_rewrite(before, after, feeds={n: np.ones((2,), np.float32) for n in ("x", "extra")})



SCAN_BODY_IDENTITY_OUTPUT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] initial, float[3, 2] x) => (float[2] y, float[3, 2] z) {
    y, z = Scan<num_scan_inputs = 1, body = body (float[2] sum_in, float[2] next) => (float[2] sum_out, float[2] scan_out) {
        sum_out = Add(sum_in, next)
        scan_out = Identity(sum_out)
    }>(initial, x)
}
"""


def test_identity_between_two_subgraph_outputs_is_kept(assert_exact_rewrite, cleaned):
    before, after, _ = cleaned(SCAN_BODY_IDENTITY_OUTPUT)
    body = next(iter(after.graph)).attributes["body"].as_graph()
    assert [v.name for v in body.outputs] == ["sum_out", "scan_out"]
    assert_exact_rewrite(before, after)


def test_duplicates_held_as_strided_views_are_merged(assert_exact_rewrite):
    # the constant folder evaluates a Transpose to a numpy view (Swin's relative position bias after fold-constants);
    # onnx_ir's deduplication stopped on it ("ndarray is not C-contiguous"), a bug exit on that model's cleanup
    before, after = ir.from_onnx_text(REDUNDANT), ir.from_onnx_text(REDUNDANT)
    for model, name in itertools.product((before, after), ("a", "b")):
        model.graph.initializers[name].const_value = ir.tensor(np.arange(9, dtype=np.float32).reshape(3, 3).T[0], name=name)
    assert not after.graph.initializers["a"].const_value.raw.flags.c_contiguous
    Cleanup()(after)
    assert list(after.graph.initializers) == ["a"]
    assert_exact_rewrite(before, after)
