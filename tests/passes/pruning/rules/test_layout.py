"""Layout and routing rules on small ONNX-text models: channels pass through Expand, through the axes a Slice leaves
alone, and beside a slice of a run-time axis."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io
from onnxcompress.passes.pruning import PruneChannels

EXPAND = """<ir_version: 10, opset_import: ["" : 18]>
g (float[N,8] x) => (float[N,2] y) {
  h = MatMul(x, w1)
  axes = Constant<value = int64[1] {2}>()
  hu = Unsqueeze(h, axes)
  target = Constant<value = int64[3] {1, 4, 3}>()
  he = Expand(hu, target)
  hs = ReduceSum<keepdims = 0>(he, axes)
  y = MatMul(hs, w2)
}"""

COMPUTED_SLICE = """<ir_version: 10, opset_import: ["" : 18]>
g (float[N,8] x) => (float[N,2] y) {
  h = MatMul(x, w1)
  heads = Constant<value = int64[3] {0, 2, 4}>()
  hh = Reshape(h, heads)
  shape = Shape(hh)
  last = Constant<value = int64[1] {2}>()
  width = Gather<axis = 0>(shape, last)
  middle = Div(width, last)
  zero = Constant<value = int64[1] {0}>()
  half = Slice(hh, zero, middle, last)
  summed = ReduceSum<keepdims = 0>(half, last)
  y = MatMul(summed, w2)
}"""


def _zero_rows(model: ir.Model, name: str, rows: list[int]) -> None:
    value = model.graph.initializers[name]
    array = value.const_value.numpy().copy()
    array[rows] = 0.0
    value.const_value = ir.tensor(array, name=name)


def _pruned_dead(original: ir.Model) -> tuple[ir.Model, list[int]]:
    model = io.clone(original)
    run = PruneChannels(dead_only=True)(model)
    return model, [g["removed"] for g in run.details["groups"] if g["removed"]]


def test_expand_passes_channels_and_its_target_shape_follows(make_model, assert_exact_rewrite):
    original = make_model(EXPAND, {"w1": (8, 4), "w2": (4, 2)})
    _zero_rows(original, "w2", [1])
    model, removed = _pruned_dead(original)
    assert removed == [1]
    assert model.graph.initializers["w1"].const_value.shape == (8, 3)
    assert_exact_rewrite(original, model, {"x": np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)})


def test_a_slice_at_a_computed_middle_leaves_the_head_axis_removable(make_model, assert_exact_rewrite):
    original = make_model(COMPUTED_SLICE, {"w1": (8, 8), "w2": (2, 2)})
    _zero_rows(original, "w2", [1])
    model, removed = _pruned_dead(original)
    assert removed == [1]
    assert model.graph.initializers["w1"].const_value.shape == (8, 4)  # head 1's four features
    assert_exact_rewrite(original, model, {"x": np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)})


FIRST_POSITIONS = """<ir_version: 10, opset_import: ["" : 18]>
g (float[N,S,8] x) => (float[N,4,2] y) {
  h = MatMul(x, w1)
  zero = Constant<value = int64[1] {0}>()
  four = Constant<value = int64[1] {4}>()
  one = Constant<value = int64[1] {1}>()
  first = Slice(h, zero, four, one)
  y = MatMul(first, w2)
}"""


def test_a_constant_slice_of_a_run_time_axis_leaves_the_channels_removable(make_model, assert_exact_rewrite):
    # Whisper's decoder (dynamo export) takes its first positions so: this stopped pruning with an internal error
    original = make_model(FIRST_POSITIONS, {"w1": (8, 4), "w2": (4, 2)})
    _zero_rows(original, "w2", [2])
    model, removed = _pruned_dead(original)
    assert removed == [1]
    assert_exact_rewrite(original, model, {"x": np.random.default_rng(1).standard_normal((3, 6, 8)).astype(np.float32)})


STACKED_QKV = """<ir_version: 10, opset_import: ["" : 18]>
g (float[N,S,8] x) => (float[N,S,8] y) {
  qkv = MatMul(x, wqkv)
  stacked = Constant<value = int64[5] {0, 0, 3, 2, 4}>()
  split = Reshape(qkv, stacked)
  heads_first = Transpose<perm = [2, 0, 3, 1, 4]>(split)
  q1, k1, v1 = Split<axis = 0, num_outputs = 3>(heads_first)
  zero = Constant<value = int64[1] {0}>()
  q = Squeeze(q1, zero)
  k = Squeeze(k1, zero)
  v = Squeeze(v1, zero)
  kt = Transpose<perm = [0, 1, 3, 2]>(k)
  scores = MatMul(q, kt)
  weights = Softmax<axis = -1>(scores)
  o = MatMul(weights, v)
  ot = Transpose<perm = [0, 2, 1, 3]>(o)
  merged = Constant<value = int64[3] {0, 0, 8}>()
  om = Reshape(ot, merged)
  y = MatMul(om, wo)
}"""


SLICED = """  one = Constant<value = int64[1] {1}>()
  two = Constant<value = int64[1] {2}>()
  three = Constant<value = int64[1] {3}>()
  origin = Constant<value = int64[1] {0}>()
  q1 = Slice(heads_first, origin, one, origin)
  k1 = Slice(heads_first, one, two, origin)
  v1 = Slice(heads_first, two, three, origin)"""


@pytest.mark.parametrize("unstack", ["split", "slice"])  # the legacy exporter's unbind, and the dynamo exporter's
def test_heads_split_after_a_stacked_q_k_v_axis_are_removable(make_model, assert_exact_rewrite, unstack):
    # timm's attention (ViT, DeiT, Swin, EVA) reshapes one qkv projection to [B, N, 3, H, D] and unstacks it: the split
    # took the stacked axis for the heads, coupled every feature of q into one unit, and froze every head of DeiT
    text = STACKED_QKV if unstack == "split" else STACKED_QKV.replace("  q1, k1, v1 = Split<axis = 0, num_outputs = 3>(heads_first)", SLICED)
    original = make_model(text, {"wqkv": (8, 24), "wo": (8, 8)})
    _zero_rows(original, "wo", [4, 5, 6, 7])  # head 1 gives nothing
    model, removed = _pruned_dead(original)
    assert removed == [1]
    kept = original.graph.initializers["wqkv"].const_value.numpy()[:, [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]]
    np.testing.assert_array_equal(model.graph.initializers["wqkv"].const_value.numpy(), kept)  # head 0's q, k and v
    assert model.graph.initializers["wo"].const_value.shape == (4, 8)
    assert_exact_rewrite(original, model, {"x": np.random.default_rng(1).standard_normal((3, 5, 8)).astype(np.float32)})


MULTI_QUERY = """<ir_version: 10, opset_import: ["" : 18]>
g (float[N,T,8] x) => (float[N,T,8] y) {
  q = MatMul(x, wq)
  qshape = Constant<value = int64[4] {0, 0, 4, 2}>()
  qh = Reshape(q, qshape)
  qt = Transpose<perm = [0, 2, 1, 3]>(qh)
  kvshape = Constant<value = int64[4] {0, 0, 1, 2}>()
  k = MatMul(x, wk)
  kh = Reshape(k, kvshape)
  kt = Transpose<perm = [0, 2, 1, 3]>(kh)
  v = MatMul(x, wv)
  vh = Reshape(v, kvshape)
  vt = Transpose<perm = [0, 2, 1, 3]>(vh)
  group = Constant<value = int64[1] {2}>()
  copies = Constant<value = int64[5] {1, 1, 4, 1, 1}>()
  merged = Constant<value = int64[4] {0, 4, -1, 2}>()
  ku = Unsqueeze(kt, group)
  ke = Expand(ku, copies)
  kr = Reshape(ke, merged)
  vu = Unsqueeze(vt, group)
  ve = Expand(vu, copies)
  vr = Reshape(ve, merged)
  kT = Transpose<perm = [0, 1, 3, 2]>(kr)
  s = MatMul(qt, kT)
  p = Softmax<axis = -1>(s)
  a = MatMul(p, vr)
  at = Transpose<perm = [0, 2, 1, 3]>(a)
  outshape = Constant<value = int64[3] {0, 0, 8}>()
  o = Reshape(at, outshape)
  y = MatMul(o, wo)
}"""


def test_a_query_head_reading_the_one_key_value_head_through_expand_is_removable(make_model, assert_exact_rewrite):
    # Gemma's multi-query attention: its heads were frozen, "Expand: not a channel axis of this op"
    original = make_model(MULTI_QUERY, {"wq": (8, 8), "wk": (8, 2), "wv": (8, 2), "wo": (8, 8)})
    _zero_rows(original, "wo", [2, 3])  # query head 1 writes nothing
    model, removed = _pruned_dead(original)
    assert removed == [1]
    assert model.graph.initializers["wq"].const_value.shape == (8, 6) and model.graph.initializers["wo"].const_value.shape == (6, 8)
    assert model.graph.initializers["wk"].const_value.shape == (8, 2)  # the one key-value head stays
    assert_exact_rewrite(original, model, {"x": np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32)})
