"""BatchNorm folding and two-input Sum → Add before static quantization: exact, and ORT then fuses every layer."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes.quantization.support.integer_friendly import fold_batch_norms, sums_as_adds
from onnxcompress.passes.quantization.quantize_static import QuantizeStatic

from ..conftest import with_weights

BN_SUM_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
cnn (float[N, 3, 8, 8] x) => (float[N, 8, 8, 8] y, float[N, 8, 8, 8] t)
<float[8, 3, 3, 3] w1 = {0.0}, float[8] b1 = {0.0}, float[8, 8, 3, 3] w2 = {0.0},
 float[8] gamma = {0.0}, float[8] beta = {0.0}, float[8] mean = {0.0}, float[8] var = {0.0}>
{
    c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    r1 = Relu (c1)
    c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2)
    n2 = BatchNormalization (c2, gamma, beta, mean, var)
    y = Sum (n2, r1)
    t = Sum (n2, r1, c1)
}
"""


@pytest.fixture
def bn_sum_cnn() -> ir.Model:
    """Conv → Relu → Conv → BatchNormalization, a two-input Sum (residual) and a three-input Sum."""
    model = with_weights(BN_SUM_TEXT)
    var = model.graph.initializers["var"]
    var.const_value = ir.tensor(np.abs(var.const_value.numpy()) + 0.5)
    return model


@pytest.fixture
def inputs() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(4).normal(size=(8, 3, 8, 8)).astype(np.float32)}


@pytest.mark.parametrize("optimization", ["disable", "all"])
def test_rewrites_are_exact(bn_sum_cnn, inputs, optimization):
    reference = runtime.run(bn_sum_cnn, inputs, optimization="disable")
    rewritten = io.clone(bn_sum_cnn)
    assert (fold_batch_norms(rewritten), sums_as_adds(rewritten)) == (1, 1)
    ops = [node.op_type for node in rewritten.graph]
    assert "BatchNormalization" not in ops and ops.count("Sum") == 1  # the three-input Sum is left alone
    got = runtime.run(rewritten, inputs, optimization=optimization)
    for name in ("y", "t"):
        np.testing.assert_allclose(got[name], reference[name], rtol=1e-4, atol=1e-4)


def test_static_quantization_leaves_no_batch_norm_or_sum_between_qdq(bn_sum_cnn, inputs):
    reference = runtime.run(bn_sum_cnn, inputs)["y"]
    run = QuantizeStatic(op_types=["Conv", "Relu", "Add"]).apply(bn_sum_cnn, calibration=ArrayReader(inputs, batch_size=4))
    quantized = run.model
    assert run.details["batch_norms_folded"] == 1 and run.details["sums_as_adds"] == 1
    assert run.details["unfused_qdq"]["count"] == 0
    for optimization in ("disable", "all"):
        got = runtime.run(quantized, inputs, optimization=optimization)["y"]
        assert np.abs(got - reference).max() <= 0.05 * np.abs(reference).max()
