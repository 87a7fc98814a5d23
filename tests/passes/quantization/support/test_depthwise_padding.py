"""Depthwise convs padded to 16 channels: exact on a real MobileNetV3-style net, refused where it would not be."""

from __future__ import annotations

import numpy as np

from onnxcompress import checks, io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes import QuantizeStatic
from onnxcompress.passes.quantization.support.depthwise_padding import pad_depthwise_channels

from ..conftest import with_weights

EXPAND_DEPTHWISE_PROJECT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8, 6, 6] x) => (float[N, 8, 6, 6] y)
<float[24, 8, 1, 1] we = {0.0}, float[24] be = {0.0}, float[24, 1, 3, 3] wd = {0.0}, float[24] bd = {0.0},
 float[8, 24, 1, 1] wp = {0.0}>
{
    e = Conv (x, we, be)
    h = HardSwish (e)
    d = Conv <group = 24, pads = [1, 1, 1, 1]> (h, wd, bd)
    r = Relu (d)
    y = Conv (r, wp)
}
"""


def depthwise_channels(model) -> list[int]:
    return [n.attributes.get_int("group", 1) for n in model.graph if n.op_type == "Conv" and n.attributes.get_int("group", 1) > 1]


def test_padding_the_mobilenet_is_exact_at_every_optimization_level(mobilenet) -> None:
    model = io.clone(mobilenet)
    padded = pad_depthwise_channels(model)

    assert padded and all(old % 16 and new % 16 == 0 and new - old < 16 for old, new in padded.values())
    assert all(c % 16 == 0 for c in depthwise_channels(model))
    assert checks.graph_problems(model) == []
    feeds = {"x": np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)}
    for optimization in ("disable", "all"):
        expected = runtime.run(mobilenet, feeds, optimization=optimization)["logits"]
        np.testing.assert_allclose(runtime.run(model, feeds, optimization=optimization)["logits"], expected, rtol=1e-4, atol=1e-5)


def test_every_tensor_coupled_to_the_depthwise_channels_grows_by_zeros() -> None:
    model = with_weights(EXPAND_DEPTHWISE_PROJECT)
    reference = io.clone(model)
    assert pad_depthwise_channels(model) == {"conv_2": (24, 32)}
    weights = {name: value.const_value.numpy() for name, value in model.graph.initializers.items()}
    assert weights["we"].shape == (32, 8, 1, 1) and weights["wd"].shape == (32, 1, 3, 3) and weights["wp"].shape == (8, 32, 1, 1)
    assert not weights["we"][24:].any() and not weights["be"][24:].any() and not weights["wp"][:, 24:].any()
    feeds = {"x": np.random.default_rng(1).normal(size=(2, 8, 6, 6)).astype(np.float32)}
    for optimization in ("disable", "all"):
        np.testing.assert_allclose(runtime.run(model, feeds, optimization=optimization)["y"],
                                   runtime.run(reference, feeds, optimization=optimization)["y"], rtol=1e-5, atol=1e-5)


def test_a_group_reaching_an_op_that_could_make_zeros_infinite_is_left_alone() -> None:
    text = EXPAND_DEPTHWISE_PROJECT.replace("r = Relu (d)", "r = Div (d, dv)").replace("float[8, 24, 1, 1] wp", "float[24, 1, 1] dv, float[8, 24, 1, 1] wp")
    model = with_weights(text)  # padded channels would divide by a padded zero
    assert pad_depthwise_channels(model) == {}
    assert depthwise_channels(model) == [24]


def test_a_group_reaching_a_graph_output_is_left_alone() -> None:
    text = EXPAND_DEPTHWISE_PROJECT.replace("=> (float[N, 8, 6, 6] y)", "=> (float[N, 8, 6, 6] y, float[N, 24, 6, 6] d)")
    model = with_weights(text)
    assert pad_depthwise_channels(model) == {}


def test_channel_counts_already_on_the_grid_are_untouched() -> None:
    model = with_weights(EXPAND_DEPTHWISE_PROJECT.replace("24", "32"))
    assert pad_depthwise_channels(model) == {}


def test_quantize_static_pads_by_default_and_reports_it(mobilenet) -> None:
    calibration = ArrayReader({"x": np.random.default_rng(2).normal(size=(8, 3, 32, 32)).astype(np.float32)})
    padded, plain = io.clone(mobilenet), io.clone(mobilenet)
    on = QuantizeStatic().apply(padded, calibration=calibration)
    QuantizeStatic(pad_depthwise=False).apply(plain, calibration=calibration)

    assert on.details["depthwise_padded"] and any("padded" in note for note in on.notes)
    assert on.details["unfused_qdq"]["count"] == 0
    assert all(c % 16 == 0 for c in depthwise_channels(padded))
    assert any(c % 16 for c in depthwise_channels(plain))
