"""``smooth``: exact in FP32, one Mul per smoothed activation, and dynamic INT8 error lower after it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeDynamic, SmoothActivations
from onnxcompress.passes.quantization.smoothing import dynamic_int8_error, smoothing_scales

from .conftest import MLP_TEXT, assert_exact_and_better_for_int8, minilm_calibration, with_weights

# A post-LN block: the LayerNorm output feeds two MatMuls (sharing one smoothing Mul) and a residual Add.
BLOCK_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
block (float[N, 6, 32] x) => (float[N, 6, 32] y)
<float[32] gamma = {0.0}, float[32] beta = {0.0}, float[32, 32] wq = {0.0}, float[32, 32] wk = {0.0}, float[32, 32] wo = {0.0}>
{
    h = LayerNormalization <axis = -1> (x, gamma, beta)
    q = MatMul (h, wq)
    k = MatMul (h, wk)
    s = Add (q, k)
    r = Relu (s)
    o = MatMul (r, wo)
    y = Add (o, h)
}
"""


def block_with_outlier_channels() -> ir.Model:
    """The block with LayerNorm gains of 40 on two channels: the outlier channels BERT shows."""
    model = with_weights(BLOCK_TEXT)
    gamma = np.ones(32, np.float32)
    gamma[[3, 17]] = 40.0
    model.graph.initializers["gamma"].const_value = ir.tensor(gamma, name="gamma")
    return model


def inputs(seed: int, count: int = 16) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(size=(count, 6, 32)).astype(np.float32)}


def test_smoothing_is_exact_and_adds_one_mul_per_activation(assert_exact_rewrite) -> None:
    before = block_with_outlier_channels()
    after = io.clone(before)
    pass_ = SmoothActivations(calibration=ArrayReader(inputs(0)))
    pass_(after)
    assert_exact_rewrite(before, after, inputs(1))
    assert pass_.details["activations"] == 2
    muls = [n for n in after.graph if n.op_type == "Mul"]
    assert len(muls) == 2
    shared = next(m for m in muls if m.inputs[0].name == "h")
    assert {user.op_type for user, _ in shared.outputs[0].uses()} == {"MatMul"} and len(shared.outputs[0].uses()) == 2
    assert [user.op_type for user, _ in after.graph.node(0).outputs[0].uses()].count("Add") == 1  # residual untouched
    assert not {"wq", "wk", "wo"} & set(after.graph.initializers)  # the replaced weights are gone, not doubled


def test_smoothing_lowers_the_dynamic_int8_error() -> None:
    reference = block_with_outlier_channels()
    plain, smoothed = io.clone(reference), io.clone(reference)
    SmoothActivations(calibration=ArrayReader(inputs(0)))(smoothed)
    for model in (plain, smoothed):
        QuantizeDynamic()(model)
    feeds = inputs(2)
    expected = runtime.run(reference, feeds)

    def squared_error(model: ir.Model) -> float:
        return float(np.mean((runtime.run(model, feeds)["y"] - expected["y"]) ** 2))

    assert squared_error(smoothed) < 0.5 * squared_error(plain)


def test_scales_move_the_chosen_share_of_the_range() -> None:
    activation, weight = np.array([8.0, 2.0, 0.0, 1.0]), np.array([0.5, 0.5, 1.0, 0.0])
    scales = smoothing_scales(activation, weight, alpha=1.0)
    assert scales[2] == scales[3]  # a zero on either side leaves the channel alone (before normalising)
    assert np.exp(np.log(scales).mean()) == pytest.approx(1.0)
    assert scales[0] / scales[1] == pytest.approx(4.0)
    half = smoothing_scales(activation, weight, alpha=0.5)
    assert half[0] / half[1] == pytest.approx(2.0)


@pytest.mark.parametrize("options, message", [({"alpha": 1.5}, "alpha"), ({"calibration": None}, "calibration")])
def test_bad_options_are_usage_errors(options, message) -> None:
    settings = {"calibration": ArrayReader(inputs(0)), **options}
    with pytest.raises(UsageError, match=message):
        SmoothActivations(**settings)(block_with_outlier_channels())


@pytest.mark.slow
def test_minilm_smoothing_is_exact_and_helps_dynamic_int8(minilm_onnx, minilm_feeds) -> None:
    reference = io.load(minilm_onnx)
    smoothed = io.clone(reference)
    SmoothActivations(calibration=minilm_calibration())(smoothed)
    assert_exact_and_better_for_int8(reference, smoothed, minilm_feeds)


def test_activations_without_outliers_are_left_alone() -> None:
    model = with_weights(BLOCK_TEXT)
    gamma = model.graph.initializers["gamma"]
    gamma.const_value = ir.tensor(np.ones(32, np.float32), name="gamma")
    pass_ = SmoothActivations(calibration=ArrayReader(inputs(0)))
    pass_(model)
    assert "h" not in pass_.details["alphas"]  # a flat LayerNorm output gains nothing from a Mul
    assert not any(n.op_type == "Mul" and n.inputs[0].name == "h" for n in model.graph)


def test_simulated_int8_error_is_what_ort_gives() -> None:
    model = with_weights(MLP_TEXT)
    feeds = {"x": np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)}
    expected = runtime.run(model, feeds)["y"]
    quantized = io.clone(model)
    QuantizeDynamic(exclude=["matmul_0"])(quantized)
    hidden = feeds["x"] @ model.graph.initializers["wa"].const_value.numpy()  # matmul_0 stays FP32
    weight = model.graph.initializers["wb"].const_value.numpy()
    measured = float(np.sum((runtime.run(quantized, feeds)["y"] - expected) ** 2) / np.sum(expected ** 2))
    simulated = dynamic_int8_error(hidden[None], [weight], [hidden[None] @ weight])
    assert simulated == pytest.approx(measured, rel=0.05)
