"""The com.microsoft rules: a packed Attention's heads and a BiasGelu's neurons go, as ONNX Runtime's optimizer
writes them."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.passes.pruning import PruneChannels

PACKED = """<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[N, 5, 16] x, int32[N] lengths) => (float[N, 5, 16] y) {
  a = com.microsoft.Attention <num_heads = 4SIZES> (x, w, b, lengths)
  o = MatMul (a, wo)
  r = Add (o, x)
  h = MatMul (r, w1)
  g = com.microsoft.BiasGelu (h, b1)
  f = com.microsoft.FastGelu (g, b2)
  y = MatMul (f, w2)
}"""
HEAD, V_HEAD = 4, 2  # q/k and v head sizes with qkv_hidden_sizes = [16, 16, 8]


def _packed(make_model, sizes: bool):
    v_width = 8 if sizes else 16
    text = PACKED.replace("SIZES", ", qkv_hidden_sizes = [16, 16, 8]" if sizes else "")
    model = make_model(text, {"w": (16, 32 + v_width), "b": (32 + v_width,), "wo": (v_width, 16), "w1": (16, 12),
                              "b1": (12,), "b2": (12,), "w2": (12, 16)})
    v_head = V_HEAD if sizes else HEAD
    wo, w2 = model.graph.initializers["wo"].const_value.numpy().copy(), model.graph.initializers["w2"].const_value.numpy().copy()
    wo[v_head: 2 * v_head] = 0  # head 1's output is read by zeros
    w2[[3, 7]] = 0  # neurons 3 and 7 are read by zeros
    for name, array in (("wo", wo), ("w2", w2)):
        model.graph.initializers[name].const_value = ir.tensor(array, name=name)
    return model


def _feeds() -> dict[str, np.ndarray]:
    x = np.random.default_rng(2).standard_normal((3, 5, 16)).astype(np.float32)
    return {"x": x, "lengths": np.array([5, 3, 1], np.int32)}


@pytest.mark.parametrize("sizes", [False, True], ids=["thirds", "qkv-hidden-sizes"])
def test_a_dead_head_and_dead_neurons_go_exactly_through_the_fused_ops(make_model, assert_exact_rewrite, sizes):
    before = _packed(make_model, sizes)
    after = io.clone(before)
    run = PruneChannels(dead_only=True)(after)
    assert sorted((g["kind"], g["removed"]) for g in run.details["groups"] if g["removed"]) == [("heads", 1), ("neurons", 2)]
    attention = next(n for n in after.graph if n.op_type == "Attention")
    assert attention.attributes.get_int("num_heads") == 3
    v_width = 3 * (V_HEAD if sizes else HEAD)
    assert after.graph.initializers["w"].const_value.shape == (16, 24 + v_width)
    assert after.graph.initializers["wo"].const_value.shape == (v_width, 16)
    assert after.graph.initializers["w1"].const_value.shape == (16, 10)
    if sizes:
        assert list(attention.attributes.get_ints("qkv_hidden_sizes")) == [12, 12, 6]
    assert_exact_rewrite(before, after, _feeds())


def test_heads_go_whole_at_any_ratio(make_model):
    model = _packed(make_model, sizes=False)
    PruneChannels(ratio=0.5, accept_loss=True)(model)
    attention = next(n for n in model.graph if n.op_type == "Attention")
    assert attention.attributes.get_int("num_heads") * 3 * HEAD == model.graph.initializers["w"].const_value.shape[1]
    assert runtime.run(model, _feeds())["y"].shape == (3, 5, 16)


def test_an_attention_with_a_past_state_keeps_its_heads_and_says_why(make_model):
    text = PACKED.replace("SIZES", "").replace("a = com.microsoft.Attention", "a, present = com.microsoft.Attention").replace(
        "(x, w, b, lengths)", "(x, w, b, lengths, past)").replace("int32[N] lengths)", "int32[N] lengths, float[2, N, 4, 0, 4] past)")
    text = text.replace("=> (float[N, 5, 16] y)", "=> (float[N, 5, 16] y, float[2, N, 4, 5, 4] present)")
    model = make_model(text, {"w": (16, 48), "b": (48,), "wo": (16, 16), "w1": (16, 12), "b1": (12,), "b2": (12,), "w2": (12, 16)})
    run = PruneChannels(ratio=0.5, accept_loss=True)(model)
    assert not any(g["kind"] == "heads" and g["removed"] for g in run.details["groups"])
    assert any("Attention '': a past state or a read present output" == g["reason"] for g in run.details["groups"])
