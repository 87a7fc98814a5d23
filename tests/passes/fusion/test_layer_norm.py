"""layer-norm family: the decomposed form of both ReduceMean spellings → LayerNormalization."""

from __future__ import annotations

import pytest

BODY = """
    mean = ReduceMean%s
    d = Sub(x, mean)
    two = Constant<value = float {2.0}>()
    sq = Pow(d, two)
    var = ReduceMean%s
    eps = Constant<value = float {1e-5}>()
    ve = Add(var, eps)
    sd = Sqrt(ve)
    n = Div(d, sd)
    ns = Mul(n, scale)
    y = Add(ns, bias)
"""
HEADER = """
<ir_version: 8, opset_import: ["" : %d]>
g (float[2, 5, 8] x) => (float[2, 5, 8] y) <float[8] scale = {1, 2, 3, 4, 5, 6, 7, 8}, float[%s] bias = {%s}%s> {
"""
ATTRIBUTE_AXES = ("<axes = [-1]>(x)", "<axes = [-1]>(sq)")
INPUT_AXES = ("(x, axes)", "(sq, axes)")


def _layer_norm(opset: int, reduce: tuple[str, str], bias_shape: str = "8", axes: int = -1) -> str:
    count = 8 if bias_shape == "8" else 40
    bias = ", ".join(str(i / 10) for i in range(count))
    axes_init = f", int64[1] axes = {{{axes}}}" if reduce == INPUT_AXES else ""
    return HEADER % (opset, bias_shape, bias, axes_init) + BODY % reduce + "}"


@pytest.mark.parametrize(("opset", "reduce"), [(17, ATTRIBUTE_AXES), (18, INPUT_AXES)])
def test_decomposed_layer_norm_is_fused(fused, assert_exact_rewrite, opset, reduce):
    before, after, fuse = fused(_layer_norm(opset, reduce))
    assert [n.op_type for n in after.graph] == ["LayerNormalization"]
    assert fuse.details["layer-norm"] == 1
    assert_exact_rewrite(before, after)


def test_not_tried_below_opset_17(fused, assert_exact_rewrite):
    before, after, fuse = fused(_layer_norm(16, ATTRIBUTE_AXES))
    assert "LayerNormalization" not in [n.op_type for n in after.graph]
    assert "layer-norm" not in fuse.details
    assert_exact_rewrite(before, after)


def test_bias_that_is_not_per_feature_is_refused(fused, assert_exact_rewrite):
    before, after, _ = fused(_layer_norm(17, ATTRIBUTE_AXES, bias_shape="5, 8"))
    assert "LayerNormalization" not in [n.op_type for n in after.graph]
    assert_exact_rewrite(before, after)


def test_normalising_another_axis_is_refused(fused, assert_exact_rewrite):
    before, after, _ = fused(_layer_norm(18, INPUT_AXES, axes=1))
    assert "LayerNormalization" not in [n.op_type for n in after.graph]
    assert_exact_rewrite(before, after)


# Keras' LayerNormalization as tf2onnx 1.17 writes it: means as GlobalAveragePool over the last axis of a rank-3 input,
# the output as x·s + (beta - mean·s) with s = gamma / sqrt(var + eps), gamma and beta shaped [1, 1, D].
TF2ONNX = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 5, 8] x) => (float[2, 5, 8] y)
  <float[1, 1, 8] gamma = {1, 2, 3, 4, 5, 6, 7, 8}, float[1, 1, 8] beta = {0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}, float eps = {0.001}> {
    mean = GlobalAveragePool(x)
    neg = Neg(mean)
    d = Sub(x, mean)
    sq = Mul(d, d)
    var = GlobalAveragePool(sq)
    ve = Add(var, eps)
    sd = Sqrt(ve)
    inv = Reciprocal(sd)
    s = Mul(inv, gamma)
    xs = Mul(x, s)
    ms = Mul(neg, s)
    shift = Add(ms, beta)
    y = Add(xs, shift)
}
"""


def test_layer_norm_as_tf2onnx_writes_it_is_fused(fused, assert_exact_rewrite):
    before, after, fuse = fused(TF2ONNX)
    assert [n.op_type for n in after.graph] == ["LayerNormalization"] and fuse.details["layer-norm"] == 1
    assert_exact_rewrite(before, after)
    # GlobalAveragePool over a rank-4 input averages two axes: no layer norm
    four = TF2ONNX.replace("float[2, 5, 8] x) => (float[2, 5, 8] y)", "float[2, 3, 5, 8] x) => (float[2, 3, 5, 8] y)")
    before, after, fuse = fused(four)
    assert fuse.details["layer-norm"] == 0
    assert_exact_rewrite(before, after)
