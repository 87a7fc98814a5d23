"""The Attention rule: heads of a 4-D ONNX Attention go from Q, K, V, Y and the projections around them together."""

from __future__ import annotations

import numpy as np

from onnxcompress import runtime
from onnxcompress.passes.pruning import PruneChannels

ATTENTION = """<ir_version: 10, opset_import: ["" : 23]>
g (float[N,4,8] x) => (float[N,4,8] y) {
  heads = Constant<value = int64[4] {0, 0, 2, 4}>()
  merged = Constant<value = int64[3] {0, 0, 8}>()
  q = MatMul(x, wq)
  k = MatMul(x, wk)
  v = MatMul(x, wv)
  qh = Reshape(q, heads)
  kh = Reshape(k, heads)
  vh = Reshape(v, heads)
  qt = Transpose<perm = [0, 2, 1, 3]>(qh)
  kt = Transpose<perm = [0, 2, 1, 3]>(kh)
  vt = Transpose<perm = [0, 2, 1, 3]>(vh)
  a = Attention(qt, kt, vt, mask)
  at = Transpose<perm = [0, 2, 1, 3]>(a)
  am = Reshape(at, merged)
  y = MatMul(am, wo)
}"""
WEIGHTS = {"wq": (8, 8), "wk": (8, 8), "wv": (8, 8), "wo": (8, 8)}


def test_a_head_goes_from_every_projection_and_the_mask_broadcast_over_heads_stays(make_model, check_pruned):
    model = make_model(ATTENTION, {**WEIGHTS, "mask": (1, 1, 4, 4)})
    original = make_model(ATTENTION, {**WEIGHTS, "mask": (1, 1, 4, 4)})
    run = PruneChannels(ratio=0.5, accept_loss=True)(model)
    assert ("heads", 1, 1) in [(g["kind"], g["kept"], g["removed"]) for g in run.details["groups"]]
    shapes = {name: value.const_value.shape for name, value in model.graph.initializers.items()}
    assert [shapes[w] for w in ("wq", "wk", "wv", "wo")] == [(8, 4), (8, 4), (8, 4), (4, 8)] and shapes["mask"] == (1, 1, 4, 4)
    x = np.random.default_rng(2).standard_normal((3, 4, 8)).astype(np.float32)
    assert check_pruned(original, model, {"x": x})["y"].shape == (3, 4, 8)


def test_a_mask_with_a_head_axis_loses_the_removed_heads_rows_too(make_model, check_pruned):
    model = make_model(ATTENTION, {**WEIGHTS, "mask": (2, 4, 4)})
    original = make_model(ATTENTION, {**WEIGHTS, "mask": (2, 4, 4)})
    PruneChannels(ratio=0.5, accept_loss=True)(model)
    kept = [h for h in range(2) if np.array_equal(model.graph.initializers["mask"].const_value.numpy()[0],
                                                   original.graph.initializers["mask"].const_value.numpy()[h])]
    assert model.graph.initializers["mask"].const_value.shape == (1, 4, 4) and len(kept) == 1
    check_pruned(original, model, {"x": np.ones((1, 4, 8), np.float32)})


def test_three_d_inputs_keep_their_heads_and_say_why(make_model):
    text = ATTENTION.replace("a = Attention(qt, kt, vt, mask)", "a3 = Attention<q_num_heads = 2, kv_num_heads = 2>(q, k, v)\n  a = Reshape(a3, heads)")
    text = text.replace("at = Transpose<perm = [0, 2, 1, 3]>(a)", "at = Identity(a)")
    model = make_model(text, WEIGHTS)
    assert runtime.run(model, {"x": np.ones((1, 4, 8), np.float32)})["y"].shape == (1, 4, 8)
    run = PruneChannels(ratio=0.5, accept_loss=True)(model)
    assert not any(g["kind"] == "heads" and g["removed"] for g in run.details["groups"])
    assert any("Attention" in note and "inputs are not 4-D" in note for note in run.notes)
