"""Taylor importance: taylor-scored pruning runs on the trainable view and refuses what it cannot run."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import io, runtime
from onnxcompress.errors import UsageError
from onnxcompress.passes.pruning import PruneChannels

CNN = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N,3,8,8] x) => (float[N,5] y) {
  a = Conv<pads=[1,1,1,1]>(x, w1, b1)
  an = BatchNormalization(a, s1, bb1, m1, var1)
  ar = Relu(an)
  p = MaxPool<kernel_shape=[2,2], strides=[2,2]>(ar)
  c = Conv<pads=[0,0,1,1]>(p, w2, b2)
  h = HardSwish(c)
  cat = Concat<axis=1>(h, p)
  g = GlobalAveragePool(cat)
  f = Flatten(g)
  y = Gemm<transB=1>(f, wf, bf)
}"""
SHAPES = {
    "w1": (8, 3, 3, 3), "b1": (8,), "s1": (8,), "bb1": (8,), "m1": (8,), "var1": (8,),
    "w2": (6, 8, 2, 2), "b2": (6,), "wf": (5, 14), "bf": (5,),
}


def test_taylor_pruning_runs(make_model, check_pruned):
    from onnxcompress.calibration.readers import ArrayReader

    model = make_model(CNN, SHAPES)
    feeds = runtime.synthetic_inputs(model, batch=2)
    reader = ArrayReader({"x": np.random.default_rng(1).standard_normal((8, 3, 8, 8)).astype(np.float32)}, batch_size=4)
    assert PruneChannels(ratio=0.5, importance="taylor", accept_loss=True).apply(model, calibration=reader).modified
    check_pruned(make_model(CNN, SHAPES), model, feeds)
    assert model.graph.initializers["wf"].const_value.shape == (5, 7)


def test_a_model_that_outputs_labels_only_is_scored_on_the_scores_they_are_taken_from(make_model):
    from onnxcompress.calibration.readers import ArrayReader

    labels_only = CNN.replace("(float[N,5] y)", "(int64[N] label)").replace("y = Gemm<transB=1>(f, wf, bf)",
                                                                           "y = Gemm<transB=1>(f, wf, bf)\n  label = ArgMax<axis=1, keepdims=0>(y)")
    samples = {"x": np.random.default_rng(1).standard_normal((8, 3, 8, 8)).astype(np.float32)}
    pruned = {}
    for name, text in (("logits", CNN), ("labels", labels_only)):
        model = make_model(text, SHAPES)
        PruneChannels(ratio=0.5, importance="taylor", accept_loss=True).apply(model, calibration=ArrayReader(samples, batch_size=4))
        pruned[name] = {key: value.const_value.numpy() for key, value in model.graph.initializers.items()}
    assert pruned["labels"]["wf"].shape == (5, 7)
    assert all(np.array_equal(pruned["labels"][key], pruned["logits"][key]) for key in pruned["logits"])  # the same channels kept


def test_taylor_refuses_ops_it_cannot_interpret(make_model):
    from onnxcompress.calibration.readers import ArrayReader

    text = CNN.replace("h = HardSwish(c)", "h = Hardmax(c)")
    model = make_model(text, SHAPES)
    pruner = PruneChannels(ratio=0.5, importance="taylor")
    with pytest.raises(UsageError, match="importance=taylor cannot train this graph in PyTorch: op.s. Hardmax are not supported; use magnitude"):
        pruner.apply(io.clone(model), calibration=ArrayReader({"x": np.zeros((2, 3, 8, 8), np.float32)}))
