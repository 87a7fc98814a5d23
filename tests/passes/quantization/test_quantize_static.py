"""quantize-static: QDQ math with our scales, ORT at disable and all, options, bad input."""

from __future__ import annotations

import typing

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import calibration, checks, io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import Fuse, QuantizeStatic
from onnxcompress.passes.quantization.support.ranges import Method

from .conftest import CNN_TEXT, calibrated_part, kernel_for, with_weights

LINEAR_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
linear (float[N, 16] x) => (float[N, 8] y)
<float[16, 8] w = {0.0}>
{
    y = MatMul (x, w)
}
"""


def u8_levels(t: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float, float]:
    """Asymmetric uint8 levels of ``t`` with the min-max scale (range widened to hold 0), its zero point and scale."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255
    zero = np.round(-lo / scale)
    return np.clip(np.round(t / scale) + zero, 0, 255), zero, scale


def qdq_u8(t: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float]:
    """Asymmetric uint8 quantize → dequantize with the min-max scale, and that scale."""
    levels, zero, scale = u8_levels(t, lo, hi)
    return (levels - zero) * scale, scale


def initializer_of(model: ir.Model, op_type: str, reading: str, index: int) -> np.ndarray:
    """Input ``index`` (a constant) of the ``op_type`` node that reads tensor ``reading``."""
    node = next(n for n in model.graph if n.op_type == op_type and n.inputs[0].name == reading)
    return node.inputs[index].const_value.numpy()


def test_static_matches_numpy_qdq_math_with_minmax_scales(reduce_range) -> None:
    model = with_weights(LINEAR_TEXT)
    weight = model.graph.initializers["w"].const_value.numpy().copy()
    x = np.random.default_rng(2).normal(size=(32, 16)).astype(np.float32)
    y = x @ weight
    QuantizeStatic(activation_type="uint8", weight_type="int8", reduce_range=reduce_range).apply(model, calibration=ArrayReader({"x": x}, batch_size=8))
    kernel = kernel_for(reduce_range)

    assert initializer_of(model, "QuantizeLinear", "x", 1) == pytest.approx((max(x.max(), 0) - min(x.min(), 0)) / 255, rel=1e-6)
    weight_scale = np.abs(weight).max(axis=0) / kernel.weight_qmax
    np.testing.assert_allclose(initializer_of(model, "DequantizeLinear", "w_quantized", 1), weight_scale, rtol=1e-6)
    x_levels, _, x_scale = u8_levels(x, x.min(), x.max())
    x_dq, _ = qdq_u8(x, x.min(), x.max())
    weight_levels = np.round(weight / weight_scale)
    # Unoptimized, ORT multiplies the dequantized tensors in FP32; fused, its integer kernel sums as this CPU does.
    lost = {"disable": 0.0, "all": kernel.saturation_loss(x_levels, weight_levels) * (x_scale * weight_scale)}
    assert checks.graph_problems(model) == []
    for optimization in ("disable", "all"):
        expected, y_scale = qdq_u8(x_dq @ (weight_levels * weight_scale) - lost[optimization], y.min(), y.max())
        got = runtime.run(model, {"x": x}, optimization=optimization)["y"]
        assert np.abs(got - expected).max() <= y_scale * 1.01
        assert np.abs(got - expected).mean() <= y_scale * 0.05


def test_cnn_quantizes_every_conv_matmul_and_ort_fuses_them(cnn, cnn_reader) -> None:
    cnn_inputs = calibrated_part(cnn_reader, cnn)  # inside the calibrated ranges
    reference = runtime.run(cnn, cnn_inputs)["y"]
    run = QuantizeStatic().apply(cnn, calibration=cnn_reader)

    assert checks.graph_problems(cnn) == []
    dequantized = {n.outputs[0].name for n in cnn.graph if n.op_type == "DequantizeLinear"}
    for node in cnn.graph:
        if node.op_type in ("Conv", "MatMul"):
            assert {v.name for v in node.inputs[:2]} <= dequantized, node.name
    assert run.details["unfused_qdq"]["count"] == 0
    assert run.details["calibration"]["tensors"] > 0
    for optimization in ("disable", "all"):
        got = runtime.run(cnn, cnn_inputs, optimization=optimization)["y"]
        assert np.abs(got - reference).max() <= 0.05 * np.abs(reference).max()


def test_per_channel_weights_use_axis_and_opset_13_is_kept(cnn, cnn_reader) -> None:
    QuantizeStatic(per_channel=True).apply(cnn, calibration=cnn_reader)
    conv_weight_dq = [n for n in cnn.graph if n.op_type == "DequantizeLinear" and n.inputs[0].name.startswith("w1")]
    assert conv_weight_dq and conv_weight_dq[0].attributes["axis"].as_int() == 0
    assert conv_weight_dq[0].inputs[1].const_value.numpy().shape == (8,)
    assert cnn.opset_imports[""] >= 13


def test_old_opset_is_converted_before_per_channel_qdq(cnn_inputs, cnn_reader) -> None:
    model = with_weights(LINEAR_TEXT.replace('"" : 17', '"" : 11'))
    x = np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)
    QuantizeStatic().apply(model, calibration=ArrayReader({"x": x}))
    assert model.opset_imports[""] >= 13
    assert checks.graph_problems(model) == []
    runtime.run(model, {"x": x}, optimization="disable")


def test_exclude_glob_keeps_matching_nodes_float(cnn, cnn_reader) -> None:
    QuantizeStatic(exclude=["conv_2*"]).apply(cnn, calibration=cnn_reader)
    conv = next(n for n in cnn.graph if n.name == "conv_2")
    assert all(v.producer() is None or v.producer().op_type != "DequantizeLinear" for v in conv.inputs[1:])


@pytest.mark.parametrize("name", ["/stem/stem.0/Conv", "/stem/stem.1/BatchNormalization"])
def test_exclude_by_a_name_from_before_fuse_keeps_that_conv_float(exported_chain, name) -> None:
    """The Conv that BatchNormalization was folded into answers to both names; the Gemm beside it is still quantized."""
    model = exported_chain()
    Fuse()(model)
    rng = np.random.default_rng(0)
    reader = ArrayReader({"x": rng.normal(size=(8, 2, 4, 4)).astype(np.float32), "t": rng.normal(size=(8, 3)).astype(np.float32)})
    outcome = QuantizeStatic(exclude=[name], accept_loss=True).apply(model, calibration=reader)
    assert "excluded 1 node: /stem/stem.0/Conv" in outcome.notes
    layers = {node.name: node for node in model.graph if node.op_type in ("Conv", "Gemm")}
    assert not _reads_dequantized(layers["/stem/stem.0/Conv"]) and _reads_dequantized(layers["/fc/MatMul"])


def _reads_dequantized(node: ir.Node) -> bool:
    return any(v is not None and v.producer() is not None and v.producer().op_type == "DequantizeLinear" for v in node.inputs)


def test_ranges_file_is_written_then_reused(cnn, cnn_reader, tmp_path) -> None:
    path = tmp_path / "ranges.json"
    first = ir.serde.deserialize_model(ir.serde.serialize_model(cnn))
    QuantizeStatic(ranges_file=str(path)).apply(first, calibration=cnn_reader)
    assert path.is_file()
    second = QuantizeStatic(ranges_file=str(path))(cnn)  # needs no calibration data once the file exists
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
        QuantizeStatic().apply(cnn, calibration=ArrayReader(arrays))
    assert "\n" not in str(info.value)


def test_missing_calibration_is_refused_before_it_starts(cnn) -> None:
    before = io.to_proto(cnn).SerializeToString()
    with pytest.raises(UsageError, match="quantize-static needs calibration data"):
        QuantizeStatic()(cnn)
    assert io.to_proto(cnn).SerializeToString() == before


@pytest.mark.parametrize(("options", "message"), [
    ({"method": "magic"}, "quantize-static: method must be one of minmax, percentile, entropy, mse, got 'magic'"),
    ({"activation_type": "int4"}, "quantize-static: activation_type must be one of uint8, int8, None"),
    ({"weight_type": "fp8"}, "quantize-static: weight_type must be one of uint8, int8, None"),
    ({"fp32_prefix": "slowest"}, "quantize-static: fp32_prefix must be one of none, fastest"),
    ({"max_drop": 1.5}, r"quantize-static: max_drop must be in \[0, 1\]"),
    ({"max_drop": -0.1}, r"quantize-static: max_drop must be in \[0, 1\]"),
    ({"max_fallback": -1}, "quantize-static: max_fallback must be >= 0"),
    ({"op_types": ["Conv", "Frobnicate"]}, r"quantize-static: op_types \['Frobnicate'\] cannot be quantized here"),
])
def test_bad_options_are_refused_when_built(options, message) -> None:
    with pytest.raises(UsageError, match=message):
        QuantizeStatic(**options)


def test_method_choices_are_the_calibration_estimators() -> None:
    assert set(typing.get_args(Method)) == set(calibration.ESTIMATORS)


def test_bias_shared_through_identity_still_fuses(cnn_reader) -> None:
    text = CNN_TEXT.replace("c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2)", "b2i = Identity (b1)\n    c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2i)")
    model = with_weights(text)
    cnn_inputs = calibrated_part(cnn_reader, model)  # inside the calibrated ranges
    reference = runtime.run(model, cnn_inputs)["y"]
    run = QuantizeStatic().apply(model, calibration=cnn_reader)
    assert "Identity" not in {n.op_type for n in model.graph}
    assert run.details["unfused_qdq"]["count"] == 0
    assert checks.graph_problems(model) == []
    got = runtime.run(model, cnn_inputs, optimization="disable")["y"]
    assert np.abs(got - reference).max() <= 0.05 * np.abs(reference).max()


# Attention whose padding mask is 0 or -inf, added to the scores, as PyTorch's legacy export of CLIP and Qwen2 writes it.
MASKED_ATTENTION = """
<ir_version: 8, opset_import: ["" : 17]>
attention (float[N, 6, 16] x, bool[N, 1, 6] keep) => (float[N, 6, 16] y)
<float[16, 16] wq = {0.0}, float[16, 16] wk = {0.0}, float[16, 16] wv = {0.0}, float[16, 16] wo = {0.0}>
{
    open = Constant <value = float {0.0}> ()
    blocked = Log (open)
    q = MatMul (x, wq)
    k = MatMul (x, wk)
    v = MatMul (x, wv)
    kt = Transpose <perm = [0, 2, 1]> (k)
    s = MatMul (q, kt)
    mask = Where (keep, open, blocked)
    masked = Add (s, mask)
    p = Softmax <axis = -1> (masked)
    context = MatMul (p, v)
    o = MatMul (context, wo)
    y = Add (o, x)
}
"""


def test_an_attention_mask_of_minus_infinity_stays_in_float_and_keeps_masking() -> None:
    # its finite values alone read as a tensor of zeros: quantized so, the mask was lost (CLIP's text encoder: cosine -0.11)
    model = with_weights(MASKED_ATTENTION)
    rng = np.random.default_rng(0)
    keep = np.ones((64, 1, 6), bool)
    keep[:, :, 3:] = rng.random((64, 1, 3)) < 0.5
    feeds = {"x": rng.standard_normal((64, 6, 16)).astype(np.float32), "keep": keep}
    expected = runtime.run(model, {k: v[:8] for k, v in feeds.items()})["y"]
    run = QuantizeStatic().apply(model, calibration=ArrayReader(feeds))
    got = runtime.run(model, {k: v[:8] for k, v in feeds.items()})["y"]
    assert run.details["unbounded_tensors"] == ["mask", "masked"]
    assert np.abs(got - expected).mean() < 0.05 * np.abs(expected).mean()
