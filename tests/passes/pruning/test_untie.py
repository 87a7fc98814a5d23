"""Untying shared weights: each reader of a shared weight, or of a stored weight's shared Cast, prunes on its own."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io
from onnxcompress.calibration.readers import ArrayReader
from onnxcompress.passes.pruning import PruneChannels

# Two Convs share one bias: untied, their output channels are two groups, not one.
SHARED_BIAS = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N,3,8,8] x) => (float[N,16,8,8] y) {
  w1 = Cast<to=1>(w1h)
  b = Cast<to=1>(bh)
  a = Conv<pads=[1,1,1,1]>(x, w1, b)
  r = Relu(a)
  w2 = Cast<to=1>(w2h)
  bi = Identity(b)
  c = Conv<pads=[1,1,1,1]>(r, w2, bi)
  s = Relu(c)
  w3 = Cast<to=1>(w3h)
  y = Conv<pads=[1,1,1,1]>(s, w3)
}"""
STORED = (SHARED_BIAS.replace("  w1 = Cast<to=1>(w1h)\n", "").replace("  b = Cast<to=1>(bh)\n", "").replace("  w2 = Cast<to=1>(w2h)\n", "")
          .replace("  w3 = Cast<to=1>(w3h)\n", "").replace("x, w1, b)", "x, w1h, bh)").replace("Identity(b)", "Identity(bh)")
          .replace("r, w2, bi", "r, w2h, bi").replace("s, w3)", "s, w3h)"))
WEIGHTS = {"w1h": (16, 3, 3, 3), "bh": (16,), "w2h": (16, 16, 3, 3), "w3h": (16, 16, 3, 3)}


@pytest.mark.parametrize("stored", [np.float16, np.float32], ids=["float16-cast-on-use", "float32"])
def test_a_bias_shared_by_two_convs_couples_neither(stored, check_pruned):
    rng = np.random.default_rng(0)
    text = SHARED_BIAS if stored == np.float16 else STORED
    weights = {name: rng.normal(size=shape).astype(np.float16).astype(stored) for name, shape in WEIGHTS.items()}
    models = []
    for _ in range(2):
        model = ir.from_onnx_text(text)
        for name, array in weights.items():
            model.graph.register_initializer(ir.Value(name=name, const_value=ir.tensor(array, name=name)))
        models.append(model)
    before, model = models
    samples = {"x": rng.random((32, 3, 8, 8), dtype=np.float32)}
    run = PruneChannels(ratio=0.5, accept_loss=True).apply(model, calibration=ArrayReader(samples))
    assert sorted(g["kept"] for g in run.details["groups"] if g["removed"]) == [8, 8]  # two groups of 16, each halved
    biases = [stored_behind(node.inputs[2]) for node in model.graph if node.op_type == "Conv" and len(node.inputs) > 2]
    assert [b.const_value.shape for b in biases] == [(8,), (8,)] and biases[0] is not biases[1]
    assert {b.const_value.dtype for b in biases} == {ir.DataType.from_numpy(np.dtype(stored))}
    check_pruned(before, model, {"x": samples["x"][:2]})


def stored_behind(value: ir.Value) -> ir.Value:
    """The initializer a Conv input is read from, through Identity and Cast."""
    while value.const_value is None:
        value = value.producer().inputs[0]
    return value


# One norm weight read by three Muls through Identity nodes (Gemma's layers' equal RMSNorm weights, deduplicated by
# the exporter), beside an MLP with a neuron that writes nothing.
SHARED_THROUGH_IDENTITIES = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N,8] x) => (float[N,8] y) {
  g1 = Identity(g)
  g2 = Identity(g)
  g3 = Identity(g)
  a = Mul(x, g1)
  h = MatMul(a, w1)
  r = Relu(h)
  m = MatMul(r, w2)
  b = Mul(m, g2)
  y = Mul(b, g3)
}"""


def test_copies_of_a_weight_forwarded_through_identities_are_tied_back_when_unchanged(make_model, check_pruned):
    # Gemma: removing FFN neurons left four copies of the norm weight its layers share (+384 parameters)
    before = make_model(SHARED_THROUGH_IDENTITIES, {"g": (8,), "w1": (8, 4), "w2": (4, 8)})
    w2 = before.graph.initializers["w2"]
    array = w2.const_value.numpy().copy()
    array[1] = 0.0
    w2.const_value = ir.tensor(array, name="w2")
    model = io.clone(before)
    run = PruneChannels(dead_only=True)(model)
    assert [g["removed"] for g in run.details["groups"] if g["removed"]] == [1]
    sizes = sorted(v.const_value.size for v in model.graph.initializers.values())
    assert sizes == [8, 24, 24]  # one norm weight, w1 [8, 3], w2 [3, 8]
    check_pruned(before, model, {"x": np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)})
