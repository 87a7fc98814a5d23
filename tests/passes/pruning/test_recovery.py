"""Recovery on real data: the digits CNN (scikit-learn's load_digits) pruned 50 %, with and without recovery."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from onnxcompress import io, runtime
from onnxcompress.passes.pruning import PruneChannels
from onnxcompress.passes.pruning.recovery import design_matrix

CALIBRATION_SAMPLES = 64
IMAGE_SIZE = 8  # the digits' native resolution: 4× cheaper to train than 16×16


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory):
    """A small digits ResNet trained for a few epochs on the 8×8 digits, exported to ONNX, and its data."""
    import torch

    from onnxcompress.models import digits, export, training, vision

    split = digits.load_split(size=IMAGE_SIZE)
    net = vision.digits_resnet(width=8)
    training.fit(net, split.x_train, split.y_train, epochs=4, lr=5e-3, batch_size=64, seed=0)
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    export.export_onnx(net, path, (torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE),), input_names=["x"], output_names=["y"])
    return io.load(path), split


def _accuracy(model, split) -> float:
    logits = runtime.run(model, {"x": split.x_test})["y"]
    return float((logits.argmax(axis=1) == split.y_test).mean())


@pytest.mark.slow
def test_recovery_beats_no_recovery_on_digits(digits_cnn, check_pruned):
    from onnxcompress.calibration.readers import ArrayReader

    original, split = digits_cnn
    reader = ArrayReader({"x": split.x_train[:CALIBRATION_SAMPLES]}, batch_size=32)
    reference = runtime.run(original, {"x": split.x_test})["y"]
    accuracy = {"input": _accuracy(original, split)}
    logit_error = {}
    for label, options in {"none": {}, "bias_fold": {"bias_fold": True}, "reconstruct": {"reconstruct": True}}.items():
        model = io.clone(original)
        assert PruneChannels(ratio=0.5, accept_loss=True, **options).apply(model, calibration=reader).modified
        check_pruned(original, model, {"x": split.x_test[:4]})
        accuracy[label] = _accuracy(model, split)
        logit_error[label] = float(np.mean((runtime.run(model, {"x": split.x_test})["y"] - reference) ** 2))
    print("digits accuracy at 50 %:", accuracy, "logit MSE:", logit_error)
    assert accuracy["input"] > 0.8
    assert accuracy["reconstruct"] >= accuracy["none"]
    assert logit_error["reconstruct"] < logit_error["none"]
    assert logit_error["bias_fold"] < logit_error["none"]
    assert accuracy["reconstruct"] > 0.3


def test_design_matrix_reproduces_conv():
    """im2col rows times the flattened weight equal ORT's Conv (strides, pads, dilations)."""
    import onnx_ir as ir

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    text = """<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3,9,9] x, float[4,3,3,3] w) => (float[2,4,5,5] y) { y = Conv<pads=[1,1,2,2], strides=[2,2], dilations=[1,1]>(x, w) }"""
    model = ir.from_onnx_text(text)
    expected = runtime.run(model, {"x": x, "w": w})["y"]
    node = next(iter(model.graph))
    node.inputs[1].const_value = ir.tensor(w)
    got = design_matrix(node, x) @ w.reshape(4, -1).T
    n, o, h, w_ = expected.shape
    np.testing.assert_allclose(got.reshape(n, h, w_, o).transpose(0, 3, 1, 2), expected, atol=1e-4)


DENSE_CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8] x) => (float[N, 4] y) {
    h = Gemm<transB = 1>(x, w1, b1)
    r = Relu(h)
    m = MatMul(r, w2)
    s = Relu(m)
    y = Gemm<transB = 1>(s, w3, b3)
}
"""


def test_reconstructed_weights_are_c_ordered_so_cleanup_can_hash_them():
    """A transposed least-squares solution stayed Fortran-ordered: cleanup's deduplication then crashed on it."""
    import onnx_ir as ir

    from onnxcompress.calibration.readers import ArrayReader
    from onnxcompress.passes import Cleanup

    rng = np.random.default_rng(0)
    model = ir.from_onnx_text(DENSE_CHAIN)
    for name, shape in {"w1": (16, 8), "b1": (16,), "w2": (16, 12), "w3": (4, 12), "b3": (4,)}.items():
        model.graph.register_initializer(ir.Value(name=name, const_value=ir.tensor(rng.normal(size=shape).astype(np.float32), name=name)))
    reader = ArrayReader({"x": rng.normal(size=(64, 8)).astype(np.float32)})
    assert PruneChannels(ratio=0.5, reconstruct=True, accept_loss=True).apply(model, calibration=reader).modified
    assert [n for n, v in model.graph.initializers.items() if not v.const_value.numpy().flags["C_CONTIGUOUS"]] == []
    Cleanup().apply(model)


CAST_ON_USE = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N,3,8,8] x) => (float[N,8,8,8] y) {
  w1 = Cast<to=1>(w1h)
  b1 = Cast<to=1>(b1h)
  a = Conv<pads=[1,1,1,1]>(x, w1, b1)
  r = Relu(a)
  w2 = Cast<to=1>(w2h)
  y = Conv<pads=[1,1,1,1]>(r, w2)
}"""

STORED = CAST_ON_USE.replace("w1 = Cast<to=1>(w1h)", "").replace("b1 = Cast<to=1>(b1h)", "").replace(
    "w2 = Cast<to=1>(w2h)", "").replace("x, w1, b1", "x, w1h, b1h").replace("r, w2", "r, w2h")


@pytest.mark.parametrize("importance", ["magnitude", "activation"])
def test_weights_stored_in_float16_and_cast_on_use_are_pruned_like_their_float32_twin(importance, check_pruned):
    """Weight-only float16 storage (every reader a Cast to float32): the Conv rule, the scores and the least-squares
    refit see the stored initializer behind the Cast, slice it and keep it float16."""
    import onnx_ir as ir

    from onnxcompress.calibration.readers import ArrayReader

    rng = np.random.default_rng(0)
    weights = {name: rng.normal(size=shape).astype(np.float16)
               for name, shape in {"w1h": (16, 3, 3, 3), "b1h": (16,), "w2h": (8, 16, 3, 3)}.items()}
    samples = {"x": rng.random((64, 3, 8, 8), dtype=np.float32)}
    pruned = {}
    for text, dtype in ((CAST_ON_USE, np.float16), (STORED, np.float32)):
        model, before = _with_weights(text, weights, dtype), _with_weights(text, weights, dtype)
        result = PruneChannels(ratio=0.5, importance=importance, reconstruct=True, accept_loss=True).apply(
            model, calibration=ArrayReader(samples))
        assert result.modified
        assert any("re-fitted 1 consumer(s)" in n for n in result.notes)
        pruned[dtype] = (model, check_pruned(before, model, {"x": samples["x"][:4]})["y"], result.details["groups"])
    model16, y16, groups16 = pruned[np.float16]
    model32, y32, groups32 = pruned[np.float32]
    named = operator.itemgetter("group")
    assert sorted(groups16, key=named) == sorted(groups32, key=named)  # kernel axes behind a Cast are no frozen neurons
    shapes = {name: (v.const_value.dtype, v.const_value.shape) for name, v in model16.graph.initializers.items()}
    assert shapes == {"w1h": (ir.DataType.FLOAT16, (8, 3, 3, 3)), "b1h": (ir.DataType.FLOAT16, (8,)),
                      "w2h": (ir.DataType.FLOAT16, (8, 8, 3, 3))}
    np.testing.assert_array_equal(model16.graph.initializers["b1h"].const_value.numpy().astype(np.float32),
                                  model32.graph.initializers["b1h"].const_value.numpy())  # the same channels kept
    np.testing.assert_allclose(y16, y32, rtol=0, atol=2e-2 * np.abs(y32).max())  # the float32 refit rounded to float16


def _with_weights(text: str, weights: dict[str, np.ndarray], dtype) -> "ir.Model":
    import onnx_ir as ir

    model = ir.from_onnx_text(text)
    for name, array in weights.items():
        model.graph.register_initializer(ir.Value(name=name, const_value=ir.tensor(array.astype(dtype), name=name)))
    return model


SHARED_READER = """<ir_version: 8, opset_import: ["" : 18]>
g (float[N,2,8] x) => (float[N,1,4] y) {
  f = MatMul(x, w1)
  r = Relu(f)
  t0, t1 = Split<axis=1, num_outputs=2>(r)
  y0 = MatMul(t0, u)
  y1 = MatMul(t1, u)
  y = Add(y0, y1)
}"""


def test_a_weight_read_at_two_steps_gets_one_fit_and_stays_shared(check_pruned):
    """``u`` reads the removed channels at two time steps (as an unrolled LSTM's input weight does): one re-fit from
    both steps' data keeps it one tensor; a fit per reader left two different copies (params 192 -> 130, not 98)."""
    from onnxcompress.calibration.readers import ArrayReader

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(size=(8, 16)).astype(np.float32), "u": rng.normal(size=(16, 4)).astype(np.float32)}
    samples = {"x": rng.normal(size=(64, 2, 8)).astype(np.float32)}
    model = _with_weights(SHARED_READER, weights, np.float32)
    result = PruneChannels(ratio=0.5, reconstruct=True, accept_loss=True).apply(model, calibration=ArrayReader(samples))
    assert "params 192 -> 98; MACs/sample 384 -> 192" in result.notes
    readers = [n for n in model.graph if n.op_type == "MatMul" and n.inputs[0].name in ("t0", "t1")]
    assert readers[0].inputs[1] is readers[1].inputs[1] and readers[0].inputs[1].shape == (8, 4)
    refitted = check_pruned(_with_weights(SHARED_READER, weights, np.float32), model, samples)["y"]
    full = runtime.run(_with_weights(SHARED_READER, weights, np.float32), samples)["y"]
    kept = model.graph.initializers["w1"].const_value.numpy()
    rows = [int(np.flatnonzero((weights["w1"] == column[:, None]).all(axis=0))[0]) for column in kept.T]
    unfitted = _with_weights(SHARED_READER, {"w1": kept, "u": weights["u"][rows]}, np.float32)
    sliced = runtime.run(unfitted, samples)["y"]  # the same channels removed, u's rows only deleted
    assert np.abs(refitted - full).mean() < 0.8 * np.abs(sliced - full).mean()


FEW_ROWS = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N,16] x) => (float[N,4] y) {
  h = MatMul(x, w1)
  r = Relu(h)
  m = MatMul(r, w2)
  y = Add(m, b2)
}"""


def test_a_fit_the_data_leaves_undetermined_keeps_the_weights_it_cannot_see():
    """8 calibration rows against 32 kept channels (as a squeeze-excite block's pooled input has): the ridge pulls
    towards the kept weights as they are, so held-out samples fare better than with plain slicing (mean error 8.3
    against 9.8), where a ridge towards 0 fared worse (12.8)."""
    from onnxcompress.calibration.readers import ArrayReader

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(size=(16, 64)).astype(np.float32), "w2": rng.normal(size=(64, 4)).astype(np.float32),
               "b2": rng.normal(size=4).astype(np.float32)}
    held_out = {"x": rng.normal(size=(256, 16)).astype(np.float32)}
    full = runtime.run(_with_weights(FEW_ROWS, weights, np.float32), held_out)["y"]
    errors = {}
    for reconstruct in (False, True):
        model = _with_weights(FEW_ROWS, weights, np.float32)
        calibration = ArrayReader({"x": rng.normal(size=(8, 16)).astype(np.float32)})
        PruneChannels(ratio=0.5, reconstruct=reconstruct, accept_loss=True).apply(model, calibration=calibration)
        errors[reconstruct] = float(np.abs(runtime.run(model, held_out)["y"] - full).mean())
    assert errors[True] < errors[False], errors
