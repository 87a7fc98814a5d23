"""quantize-dynamic with calibrated activation scales: QDQ math, batch independence, ranges file, bad options."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import checks, fidelity, io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeDynamic
from onnxcompress.passes.quantization.support.ranges import u8_scale_and_zero_point

from ..conftest import calibrated_part, kernel_for, minilm_calibration, with_weights

LINEAR_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
linear (float[N, 16] x) => (float[N, 8] y)
<float[16, 8] w = {0.0}, float[8] b = {0.0}>
{
    m = MatMul (x, w)
    y = Add (m, b)
}
"""

TWO_LAYER_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
two (float[N, 16] x) => (float[N, 8] y)
<float[16, 16] wa = {0.0}, float[16] ba = {0.0}, float[16, 8] wb = {0.0}>
{
    ma = MatMul (x, wa)
    h = Add (ma, ba)
    r = Relu (h)
    y = MatMul (r, wb)
}
"""


def rows_of_mixed_magnitude(count: int, seed: int) -> np.ndarray:
    """Rows whose ranges differ by up to 20x, so a batch-wide dynamic scale differs from a row's own."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(count, 16)) * rng.uniform(0.2, 4.0, size=(count, 1))).astype(np.float32)


def calibration_reader(count: int = 64) -> ArrayReader:
    return ArrayReader({"x": rows_of_mixed_magnitude(count, seed=1)}, batch_size=16)


def quantized(text: str, calibration: ArrayReader | None = None, **options) -> ir.Model:
    model = with_weights(text)
    QuantizeDynamic(**options).apply(model, calibration=calibration)
    return model


def batched_and_alone(model: ir.Model, feeds: dict[str, np.ndarray], optimization: str) -> tuple[dict, dict]:
    """Outputs of ``model`` on the whole batch, and on each sample alone (concatenated)."""
    session = runtime.session(model, optimization=optimization)
    count = len(next(iter(feeds.values())))
    alone = [runtime.run(session, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(count)]
    return runtime.run(session, feeds), {name: np.concatenate([out[name] for out in alone]) for name in alone[0]}


def test_u8_parameters_cover_zero_like_dynamic_quantize_linear() -> None:
    scale, zero_point = u8_scale_and_zero_point(0.5, 2.55)
    assert np.isclose(scale, 0.01) and zero_point == 0
    scale, zero_point = u8_scale_and_zero_point(-1.0, 1.55)
    assert np.isclose(scale, 0.01) and zero_point == 100
    assert u8_scale_and_zero_point(0.0, 0.0) == (1.0, 0.0)
    scales, zero_points = u8_scale_and_zero_point(np.array([-1.0, 0.5]), np.array([1.55, 2.55]))
    np.testing.assert_allclose(scales, [0.01, 0.01])
    np.testing.assert_array_equal(zero_points, [100, 0])


def test_calibrated_matmul_matches_the_qdq_math(reduce_range) -> None:
    reader = calibration_reader()
    model = with_weights(LINEAR_TEXT)
    weight = model.graph.initializers["w"].const_value.numpy()
    bias = model.graph.initializers["b"].const_value.numpy()
    QuantizeDynamic(activation_scales="calibrated", reduce_range=reduce_range).apply(model, calibration=reader)
    assert sorted(n.op_type for n in model.graph) == ["MatMulIntegerToFloat", "QuantizeLinear"]
    kernel = kernel_for(reduce_range)

    seen = calibrated_part(reader, with_weights(LINEAR_TEXT))["x"]
    scale, zero_point = u8_scale_and_zero_point(float(seen.min()), float(seen.max()))
    scale, zero_point = np.float32(scale), int(zero_point)
    inputs = {"x": rows_of_mixed_magnitude(6, seed=2) * 1.5}  # also beyond the calibrated range: saturates
    levels = np.clip(np.round(inputs["x"] / scale) + zero_point, 0, 255).astype(np.int64)
    weight_scale = np.abs(weight).max(axis=0) / kernel.weight_qmax
    np.testing.assert_allclose(model.graph.initializers["w_scale"].const_value.numpy(), weight_scale, rtol=1e-6)
    weight_codes = np.round(weight / weight_scale).astype(np.int64)
    sums = levels @ weight_codes - kernel.saturation_loss(levels, weight_codes) - zero_point * weight_codes.sum(axis=0)
    expected = sums * (scale * weight_scale) + bias
    for optimization in ("disable", "all"):
        np.testing.assert_allclose(runtime.run(model, inputs, optimization=optimization)["y"], expected, rtol=1e-5, atol=1e-5)


def test_a_sample_gets_the_same_result_in_any_batch_unlike_dynamic_scales() -> None:
    inputs = rows_of_mixed_magnitude(8, seed=3)
    calibrated = quantized(TWO_LAYER_TEXT, activation_scales="calibrated", calibration=calibration_reader())
    dynamic = quantized(TWO_LAYER_TEXT)
    assert checks.graph_problems(calibrated) == []
    for optimization in ("disable", "all"):
        batched, alone = batched_and_alone(calibrated, {"x": inputs}, optimization)
        np.testing.assert_allclose(batched["y"], alone["y"], rtol=1e-6, atol=1e-6)
        dynamic_batched, dynamic_alone = batched_and_alone(dynamic, {"x": inputs}, optimization)
        assert np.abs(dynamic_batched["y"] - dynamic_alone["y"]).max() > 1e-3


def test_ranges_file_is_written_then_reused_without_calibration_data(tmp_path) -> None:
    path = tmp_path / "ranges.json"
    first = quantized(TWO_LAYER_TEXT, activation_scales="calibrated", calibration=calibration_reader(), ranges_file=str(path))
    assert path.is_file()
    second = quantized(TWO_LAYER_TEXT, activation_scales="calibrated", ranges_file=str(path))
    inputs = {"x": rows_of_mixed_magnitude(4, seed=5)}
    np.testing.assert_array_equal(runtime.run(first, inputs)["y"], runtime.run(second, inputs)["y"])


def test_ranges_file_missing_a_tensor_is_refused_in_one_line(tmp_path) -> None:
    path = tmp_path / "ranges.json"
    quantized(TWO_LAYER_TEXT, activation_scales="calibrated", calibration=calibration_reader(), ranges_file=str(path), exclude=["matmul_3"])
    with pytest.raises(UsageError, match="no calibrated range for r ") as info:
        quantized(TWO_LAYER_TEXT, activation_scales="calibrated", ranges_file=str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"activation_scales": "per-token"}, "activation_scales must be"),
    ({"method": "percentile"}, "only with activation_scales=calibrated"),
    ({"ranges_file": "r.json"}, "only with activation_scales=calibrated"),
])
def test_bad_scale_options_are_refused_in_one_line(options, message) -> None:
    with pytest.raises(UsageError, match=message) as info:
        QuantizeDynamic(**options)
    assert "\n" not in str(info.value)


def test_calibrated_scales_without_calibration_data_are_refused() -> None:
    with pytest.raises(UsageError, match="calibration data"):
        quantized(LINEAR_TEXT, activation_scales="calibrated")


def test_minilm_calibrated_scales_are_fused_batch_independent_and_close(minilm_onnx, minilm_feeds) -> None:
    reference = io.load(minilm_onnx)
    model = io.clone(reference)
    run = QuantizeDynamic(activation_scales="calibrated").apply(model, calibration=minilm_calibration())
    assert run.details["calibrated_scales"]["fused_matmuls"] == sum(n.op_type == "MatMulIntegerToFloat" for n in model.graph) > 30
    assert not {"DynamicQuantizeLinear", "MatMulInteger"} & {n.op_type for n in model.graph}
    expected = runtime.run(reference, minilm_feeds)
    for optimization in ("disable", "all"):
        batched, alone = batched_and_alone(model, minilm_feeds, optimization)
        for name in batched:
            np.testing.assert_allclose(batched[name], alone[name], rtol=1e-4, atol=1e-4)
        embedding = {"sentence_embedding": batched["sentence_embedding"]}  # last_hidden_state also holds masked padding
        assert fidelity.compare({"sentence_embedding": expected["sentence_embedding"]}, embedding).cosine > 0.99
