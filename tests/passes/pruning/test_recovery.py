"""Recovery on real data: the digits CNN (scikit-learn's load_digits) pruned 50 %, with and without recovery."""

from __future__ import annotations

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
