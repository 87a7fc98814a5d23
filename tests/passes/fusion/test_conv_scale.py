"""conv-scale family: a per-channel Mul after Conv into its weights and bias, then the Add after it into the bias."""

from __future__ import annotations

# A BatchNorm as tf2onnx leaves it after Keras MobileNetV2's expansion convs: Mul and Add by per-channel constants.
CONV_SCALE_SHIFT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 4, 4] x) => (float[1, 3, 4, 4] y)
  <float[3, 2, 1, 1] w = {1, 2, 3, 4, 5, 6}, float[3] b0 = {1, -1, 0.5}, float[1, 3, 1, 1] s = {0.5, -2, 3},
   float[1, 3, 1, 1] t = {0.25, 1, -1}> {
    c = Conv(x, w, b0)
    m = Mul(s, c)
    y = Add(m, t)
}
"""


def test_a_batchnorm_written_as_mul_and_add_after_a_conv_folds_into_it(fused, assert_exact_rewrite):
    before, after, run = fused(CONV_SCALE_SHIFT)
    assert [n.op_type for n in after.graph] == ["Conv"]
    assert run.details["conv-scale"] == 1 and run.details["bias-add"] == 1
    assert_exact_rewrite(before, after)


def test_a_scale_that_is_not_one_per_channel_or_a_conv_read_elsewhere_stays(fused, assert_exact_rewrite):
    spatial = CONV_SCALE_SHIFT.replace("float[1, 3, 1, 1] s = {0.5, -2, 3}", "float[1, 1, 4, 1] s = {0.5, -2, 3, 1}")
    before, after, _ = fused(spatial)
    assert [n.op_type for n in after.graph] == ["Conv", "Mul", "Add"]
    assert_exact_rewrite(before, after)
    read_twice = CONV_SCALE_SHIFT.replace("=> (float[1, 3, 4, 4] y)", "=> (float[1, 3, 4, 4] y, float[1, 3, 4, 4] c)")
    before, after, _ = fused(read_twice)
    assert "Mul" in [n.op_type for n in after.graph]
    assert_exact_rewrite(before, after)
