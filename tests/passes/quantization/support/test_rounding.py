"""GPTQ rounding: on ORT's own INT8 grid, reproduced exactly by ORT, and closer to FP32 than rounding to nearest."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeDynamic
from onnxcompress.passes.quantization.support.rounding import round_with_error_feedback

from ..conftest import calibrated_part, kernel_for, with_weights


def correlated_inputs(seed: int, count: int = 256) -> np.ndarray:
    """Inputs whose 16 channels mix 4 hidden factors: rounding errors of one channel can be cancelled by others."""
    mixing = np.random.default_rng(100).normal(size=(4, 16))
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(count, 4)) @ mixing + 0.05 * rng.normal(size=(count, 16))).astype(np.float32)


@pytest.mark.parametrize("per_channel", [True, False])
def test_rounded_weights_sit_on_the_grid_ort_derives_and_lower_the_output_error(per_channel) -> None:
    weight = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    x = correlated_inputs(0)
    rounded = round_with_error_feedback(weight, x.T.astype(np.float64) @ x, qmax=127, per_channel=per_channel)
    peaks = np.abs(weight).max(axis=0) if per_channel else np.abs(weight).max()
    assert np.allclose(np.abs(rounded).max(axis=0) if per_channel else np.abs(rounded).max(), peaks)
    steps = rounded / (peaks / 127)
    assert np.allclose(steps, np.round(steps), atol=1e-3) and np.abs(steps).max() <= 127 + 1e-3
    nearest = np.round(weight / (peaks / 127)) * (peaks / 127)
    held_out = correlated_inputs(2)
    assert np.linalg.norm(held_out @ (rounded - weight)) < 0.8 * np.linalg.norm(held_out @ (nearest - weight))


def mlp() -> ir.Model:
    return with_weights("""
<ir_version: 8, opset_import: ["" : 17]>
mlp (float[N, 16] x) => (float[N, 8] y)
<float[16, 32] wa = {0.0}, float[32, 8] wb = {0.0}>
{
    h = MatMul (x, wa)
    r = Relu (h)
    y = MatMul (r, wb)
}
""")


def test_quantize_dynamic_with_gptq_keeps_our_integers_and_is_closer_to_fp32(reduce_range) -> None:
    reference, calibration = mlp(), ArrayReader({"x": correlated_inputs(0)})
    nearest, gptq = io.clone(reference), io.clone(reference)
    QuantizeDynamic(reduce_range=reduce_range)(nearest)
    run = QuantizeDynamic(gptq=True, reduce_range=reduce_range).apply(gptq, calibration=calibration)
    assert any("2 MatMul weights rounded" in line for line in run.notes)
    stored = gptq.graph.initializers["wa_quantized"].const_value.numpy().astype(np.float32)
    scale = gptq.graph.initializers["wa_scale"].const_value.numpy()
    x = calibrated_part(calibration, reference)["x"]
    qmax = kernel_for(reduce_range).weight_qmax  # the grid of the target quantize-dynamic used
    expected = round_with_error_feedback(reference.graph.initializers["wa"].const_value.numpy(), x.T.astype(np.float64) @ x, qmax, True)
    assert np.allclose(stored * scale, expected, rtol=1e-5, atol=1e-7)
    feeds = {"x": correlated_inputs(3)}
    want = runtime.run(reference, feeds)["y"]
    for level in ("disable", "all"):
        error = {name: np.linalg.norm(runtime.run(m, feeds, optimization=level)["y"] - want) for name, m in (("n", nearest), ("g", gptq))}
        assert error["g"] < error["n"]


def test_gptq_needs_calibration_before_it_starts() -> None:
    model = mlp()
    before = io.to_proto(model).SerializeToString()
    with pytest.raises(UsageError, match="quantize-dynamic needs calibration data .*gptq"):
        QuantizeDynamic(gptq=True)(model)
    assert io.to_proto(model).SerializeToString() == before


def test_gptq_with_uint8_weights_is_refused_when_built() -> None:
    with pytest.raises(UsageError, match="quantize-dynamic: gptq rounds symmetric int8 weights"):
        QuantizeDynamic(gptq=True, weight_type="uint8")


def test_a_layer_the_fallback_keeps_in_fp32_keeps_its_original_weights() -> None:
    model = mlp()
    x = correlated_inputs(0)
    run = QuantizeDynamic(gptq=True, max_drop=0.0, max_fallback=1, accept_loss=True).apply(model, calibration=ArrayReader({"x": x}))
    kept = run.details["fallback"]["kept_fp32"]
    assert len(kept) == 1
    weight = next(n for n in model.graph if n.name == kept[0]).inputs[1]
    assert weight.name in ("wa", "wb")
    assert np.array_equal(weight.const_value.numpy(), mlp().graph.initializers[weight.name].const_value.numpy())


def shared_weight_model() -> ir.Model:
    """Two layers reading one weight, as an exporter writes deep-copied layers whose equal weights it deduplicated."""
    return with_weights("""
<ir_version: 8, opset_import: ["" : 17]>
shared (float[N, 16] x) => (float[N, 16] y)
<float[16, 16] w = {0.0}>
{
    h = MatMul (x, w)
    r = Tanh (h)
    y = MatMul (r, w)
}
""")


def test_a_weight_two_matmuls_share_is_rounded_once_on_both_activations() -> None:
    reference, calibration = shared_weight_model(), ArrayReader({"x": correlated_inputs(0)})
    model = io.clone(reference)
    run = QuantizeDynamic(gptq=True).apply(model, calibration=calibration)
    assert any(line.startswith("1 MatMul weights rounded") for line in run.notes)
    x = calibrated_part(calibration, reference)["x"]
    hidden = np.tanh(x @ reference.graph.initializers["w"].const_value.numpy())
    moment = x.T.astype(np.float64) @ x + hidden.T.astype(np.float64) @ hidden
    qmax = kernel_for(None).weight_qmax
    expected = round_with_error_feedback(reference.graph.initializers["w"].const_value.numpy(), moment, qmax, True)
    quantized = [v for name, v in model.graph.initializers.items() if name.startswith("w") and name.endswith("_quantized")]
    scales = [v for name, v in model.graph.initializers.items() if name.startswith("w") and name.endswith("_scale")]
    assert quantized and len(quantized) == len(scales)
    for stored, scale in zip(quantized, scales):
        assert np.allclose(stored.const_value.numpy().astype(np.float32) * scale.const_value.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_rounding_no_weight_says_why() -> None:
    model = with_weights("""
<ir_version: 8, opset_import: ["" : 17]>
gemm (float[N, 16] x) => (float[N, 8] y)
<float[8, 16] w = {0.0}>
{
    y = Gemm <transB = 1> (x, w)
}
""")
    run = QuantizeDynamic(gptq=True).apply(model, calibration=ArrayReader({"x": correlated_inputs(0)}))
    assert any(line.startswith("0 MatMul weights rounded") and "no MatMul reads a 2-D float32 initializer" in line
               for line in run.notes)
