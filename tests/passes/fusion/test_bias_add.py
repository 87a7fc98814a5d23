"""bias-add family: per-channel Add into the Conv bias; 2-D MatMul+Add into Gemm only when legal."""

from __future__ import annotations

import pytest

CONV_ADD = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 4, 4] x) => (float[1, 3, 4, 4] y)
  <float[3, 2, 1, 1] w = {1, 2, 3, 4, 5, 6}, float[3] b0 = {1, 1, 1}, float[3, 1, 1] b = {0.5, -1, 2}> {
    c = Conv(x, w, b0)
    y = Add(b, c)
}
"""

CONV_ADD_SPATIAL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 1, 2, 2] x) => (float[1, 1, 2, 2] y)
  <float[1, 1, 1, 1] w = {2}, float[2, 2] b = {1, 2, 3, 4}> {
    c = Conv(x, w)
    y = Add(c, b)
}
"""

MATMUL_ADD_2D = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4, 3] x) => (float[4, 2] y) <float[3, 2] w = {1, 2, 3, 4, 5, 6}, float[2] b = {0.5, -0.5}> {
    m = MatMul(x, w)
    y = Add(m, b)
}
"""

MATMUL_ADD_3D = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 4, 3] x) => (float[2, 4, 2] y) <float[3, 2] w = {1, 2, 3, 4, 5, 6}, float[2] b = {0.5, -0.5}> {
    m = MatMul(x, w)
    y = Add(m, b)
}
"""

MATMUL_ADD_BROADCASTING_BIAS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4, 3] x) => (float[2, 4, 2] y) <float[3, 2] w = {1, 2, 3, 4, 5, 6}, float[2, 1, 2] b = {1, 2, 3, 4}> {
    m = MatMul(x, w)
    y = Add(m, b)
}
"""


def test_per_channel_add_joins_the_conv_bias(fused, assert_exact_rewrite):
    before, after, _ = fused(CONV_ADD)
    assert [n.op_type for n in after.graph] == ["Conv"]
    assert_exact_rewrite(before, after)


def test_2d_matmul_add_becomes_gemm(fused, assert_exact_rewrite):
    before, after, _ = fused(MATMUL_ADD_2D)
    assert [n.op_type for n in after.graph] == ["Gemm"]
    assert_exact_rewrite(before, after)


@pytest.mark.parametrize(
    ("text", "ops"),
    [
        (CONV_ADD_SPATIAL, ["Conv", "Add"]),
        (MATMUL_ADD_3D, ["MatMul", "Add"]),
        (MATMUL_ADD_BROADCASTING_BIAS, ["MatMul", "Add"]),
    ],
    ids=["spatial-add-on-conv", "3d-matmul", "bias-broadcasts-result"],
)
def test_adds_that_are_not_a_legal_bias_are_left(fused, assert_exact_rewrite, text, ops):
    before, after, fuse = fused(text)
    assert [n.op_type for n in after.graph] == ops
    assert fuse.details["bias-add"] == 0
    assert_exact_rewrite(before, after)
