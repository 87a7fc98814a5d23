"""The fuse pass as a whole: registered, opset-gated per family, and blind to ops it does not know."""

from __future__ import annotations

from onnxcompress.passes import REGISTRY, Fuse

UNKNOWN_OP_BETWEEN = """
<ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
g (float[4, 3] x) => (float[4, 2] y) <float[3, 2] w = {1, 2, 3, 4, 5, 6}, float[2] b = {0.5, -0.5}> {
    m = MatMul(x, w)
    u = com.example.Mystery(m)
    y = Add(u, b)
}
"""


def test_fuse_is_registered_as_exact():
    assert REGISTRY["fuse"] is Fuse and Fuse.exact


def test_unknown_ops_are_left_alone(fused):
    _, after, fuse = fused(UNKNOWN_OP_BETWEEN)
    assert [n.op_type for n in after.graph] == ["MatMul", "Mystery", "Add"]
    assert fuse.details["bias-add"] == 0
