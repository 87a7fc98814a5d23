"""quantize-static: QDQ math with our scales, ORT at disable and all, options, bad input."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import checks, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeStatic

from .conftest import CNN_TEXT, with_weights

LINEAR_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
linear (float[N, 16] x) => (float[N, 8] y)
<float[16, 8] w = {0.0}>
{
    y = MatMul (x, w)
}
"""


def qdq_u8(t: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float]:
    """Asymmetric uint8 quantize → dequantize with the min-max scale (range widened to hold 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255
    zero = np.round(-lo / scale)
    return (np.clip(np.round(t / scale) + zero, 0, 255) - zero) * scale, scale


def initializer_of(model: ir.Model, op_type: str, reading: str, index: int) -> np.ndarray:
    """Input ``index`` (a constant) of the ``op_type`` node that reads tensor ``reading``."""
    node = next(n for n in model.graph if n.op_type == op_type and n.inputs[0].name == reading)
    return node.inputs[index].const_value.numpy()


def test_static_matches_numpy_qdq_math_with_minmax_scales() -> None:
    model = with_weights(LINEAR_TEXT)
    weight = model.graph.initializers["w"].const_value.numpy().copy()
    x = np.random.default_rng(2).normal(size=(32, 16)).astype(np.float32)
    y = x @ weight
    QuantizeStatic(calibration=ArrayReader({"x": x}, batch_size=8), activation_type="uint8", weight_type="int8", reduce_range=False)(model)

    assert initializer_of(model, "QuantizeLinear", "x", 1) == pytest.approx((max(x.max(), 0) - min(x.min(), 0)) / 255, rel=1e-6)
    weight_scale = np.abs(weight).max(axis=0) / 127
    x_dq, _ = qdq_u8(x, x.min(), x.max())
    w_dq = np.round(weight / weight_scale) * weight_scale
    expected, y_scale = qdq_u8(x_dq @ w_dq, y.min(), y.max())
    assert checks.graph_problems(model) == []
    for optimization in ("disable", "all"):
        got = runtime.run(model, {"x": x}, optimization=optimization)["y"]
        assert np.abs(got - expected).max() <= y_scale * 1.01
        assert np.abs(got - expected).mean() <= y_scale * 0.05


def test_cnn_quantizes_every_conv_matmul_and_ort_fuses_them(cnn, cnn_inputs, cnn_reader) -> None:
    reference = runtime.run(cnn, cnn_inputs)["y"]
    pass_ = QuantizeStatic(calibration=cnn_reader)
    pass_(cnn)

    assert checks.graph_problems(cnn) == []
    dequantized = {n.outputs[0].name for n in cnn.graph if n.op_type == "DequantizeLinear"}
    for node in cnn.graph:
        if node.op_type in ("Conv", "MatMul"):
            assert {v.name for v in node.inputs[:2]} <= dequantized, node.name
    assert pass_.details["unfused_qdq"]["count"] == 0
    assert pass_.details["calibration"]["tensors"] > 0
    for optimization in ("disable", "all"):
        got = runtime.run(cnn, cnn_inputs, optimization=optimization)["y"]
        assert np.abs(got - reference).max() <= 0.05 * np.abs(reference).max()


def test_per_channel_weights_use_axis_and_opset_13_is_kept(cnn, cnn_reader) -> None:
    QuantizeStatic(calibration=cnn_reader, per_channel=True)(cnn)
    conv_weight_dq = [n for n in cnn.graph if n.op_type == "DequantizeLinear" and n.inputs[0].name.startswith("w1")]
    assert conv_weight_dq and conv_weight_dq[0].attributes["axis"].as_int() == 0
    assert conv_weight_dq[0].inputs[1].const_value.numpy().shape == (8,)
    assert cnn.opset_imports[""] >= 13


def test_old_opset_is_converted_before_per_channel_qdq(cnn_inputs, cnn_reader) -> None:
    model = with_weights(LINEAR_TEXT.replace('"" : 17', '"" : 11'))
    x = np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)
    QuantizeStatic(calibration=ArrayReader({"x": x}))(model)
    assert model.opset_imports[""] >= 13
    assert checks.graph_problems(model) == []
    runtime.run(model, {"x": x}, optimization="disable")


def test_exclude_glob_keeps_matching_nodes_float(cnn, cnn_reader) -> None:
    QuantizeStatic(calibration=cnn_reader, exclude=["conv_2*"])(cnn)
    conv = next(n for n in cnn.graph if n.name == "conv_2")
    assert all(v.producer() is None or v.producer().op_type != "DequantizeLinear" for v in conv.inputs[1:])


def test_ranges_file_is_written_then_reused(cnn, cnn_reader, tmp_path) -> None:
    path = tmp_path / "ranges.json"
    first = ir.serde.deserialize_model(ir.serde.serialize_model(cnn))
    QuantizeStatic(calibration=cnn_reader, ranges_file=str(path))(first)
    assert path.is_file()
    second = QuantizeStatic(ranges_file=str(path))
    second(cnn)
    assert second.details["calibration"]["source"].startswith("loaded")
    assert ir.serde.serialize_model(first).graph == ir.serde.serialize_model(cnn).graph


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"image": np.zeros((4, 3, 8, 8), np.float32)}, "lacks model input"),
        ({"x": np.zeros((4, 3, 8, 8), np.float64)}, "float64"),
        ({"x": np.zeros((4, 3, 9, 8), np.float32)}, "shape"),
        ({"x": np.full((4, 3, 8, 8), np.nan, np.float32)}, "NaN"),
        ({"x": np.zeros((0, 3, 8, 8), np.float32)}, "empty"),
    ],
)
def test_bad_calibration_data_is_one_line_usage_error(cnn, arrays, message) -> None:
    with pytest.raises(UsageError, match=message) as info:
        QuantizeStatic(calibration=ArrayReader(arrays))(cnn)
    assert "\n" not in str(info.value)


def test_missing_calibration_and_unknown_method_are_usage_errors(cnn, cnn_reader) -> None:
    with pytest.raises(UsageError, match="calibration data"):
        QuantizeStatic()(cnn)
    with pytest.raises(UsageError, match="method"):
        QuantizeStatic(calibration=cnn_reader, method="magic")(cnn)


def test_bias_shared_through_identity_still_fuses(cnn_inputs, cnn_reader) -> None:
    text = CNN_TEXT.replace("c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2)", "b2i = Identity (b1)\n    c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2i)")
    model = with_weights(text)
    reference = runtime.run(model, cnn_inputs)["y"]
    pass_ = QuantizeStatic(calibration=cnn_reader)
    pass_(model)
    assert "Identity" not in {n.op_type for n in model.graph}
    assert pass_.details["unfused_qdq"]["count"] == 0
    assert checks.graph_problems(model) == []
    got = runtime.run(model, cnn_inputs, optimization="disable")["y"]
    assert np.abs(got - reference).max() <= 0.05 * np.abs(reference).max()
