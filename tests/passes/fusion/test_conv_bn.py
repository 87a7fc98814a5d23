"""conv-batchnorm family: BN folded into the conv's weights, refused when its parameters are inputs."""

from __future__ import annotations

CONV_BN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 5, 5] x) => (float[1, 3, 3, 3] y)
  <float[3, 2, 3, 3] w = {%s}, float[3] s = {1.5, 0.5, 2.0}, float[3] b = {0.1, -0.2, 0.3},
   float[3] m = {0.05, 0.1, -0.1}, float[3] v = {0.9, 1.1, 0.7}> {
    c = Conv(x, w)
    y = BatchNormalization<epsilon = 0.001>(c, s, b, m, v)
}
""" % ", ".join(str((i % 7) / 7 - 0.4) for i in range(54))

BN_PARAMS_ARE_INPUTS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 1, 4, 4] x, float[1] s) => (float[1, 1, 4, 4] y)
  <float[1, 1, 1, 1] w = {2.0}, float[1] s = {1.0}, float[1] b = {0.0}, float[1] m = {0.0}, float[1] v = {1.0}> {
    c = Conv(x, w)
    y = BatchNormalization(c, s, b, m, v)
}
"""


def test_batchnorm_is_folded_into_the_conv(fused, assert_exact_rewrite):
    before, after, fuse = fused(CONV_BN)
    assert [n.op_type for n in after.graph] == ["Conv"]
    assert fuse.details["conv-batchnorm"] == 1
    assert_exact_rewrite(before, after)


def test_batchnorm_with_overridable_parameters_is_left(fused, assert_exact_rewrite):
    before, after, fuse = fused(BN_PARAMS_ARE_INPUTS)
    assert [n.op_type for n in after.graph] == ["Conv", "BatchNormalization"]
    assert fuse.details["conv-batchnorm"] == 0
    assert_exact_rewrite(before, after)
