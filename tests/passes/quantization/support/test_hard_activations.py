"""Hard-sigmoid/hard-swish after a Conv: exact FP32 rewrites, and a MobileNetV3-style net ORT fully fuses in int8."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import checks, io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes import QuantizeStatic
from onnxcompress.passes.quantization.support.hard_activations import rewrite_hard_activations

from ..conftest import with_weights

ALL_OPS = ["Conv", "Add", "Mul", "Clip"]

CONV_ACTIVATIONS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y)
<float[4, 3, 3, 3] w1 = {0.0}, float[4] b1 = {0.0}, float[4, 4, 1, 1] w2 = {0.0}>
{
    c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    h = HardSwish (c1)
    c2 = Conv (h, w2)
    gate = HardSigmoid <alpha = 0.25, beta = 0.4> (c2)
    y = Mul (h, gate)
}
"""

SHARED_CONV_OUTPUT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y)
<float[4, 3, 3, 3] w1 = {0.0}, float[4] b1 = {0.0}>
{
    c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    h = HardSwish (c1)
    y = Add (h, c1)
}
"""


def feeds(batch: int = 4, side: int = 8) -> dict[str, np.ndarray]:
    """Seeded inputs wide enough to reach every piece of the hard activations."""
    return {"x": (np.random.default_rng(3).normal(size=(batch, 3, side, side)) * 4).astype(np.float32)}


def ops(model: ir.Model) -> list[str]:
    """The op types in graph order."""
    return [node.op_type for node in model.graph]


def test_hard_swish_and_hard_sigmoid_after_convs_are_rewritten_exactly(assert_exact_rewrite) -> None:
    before = with_weights(CONV_ACTIVATIONS, scale=1.0)
    after = io.clone(before)

    counts = rewrite_hard_activations(after, ALL_OPS)

    assert counts == {"HardSigmoid": 1, "HardSwish": 1}
    assert "HardSwish" not in ops(after) and "HardSigmoid" not in ops(after)
    assert [n.name for n in after.graph if n.op_type == "Conv"] == [n.name for n in before.graph if n.op_type == "Conv"]
    assert "w1" not in after.graph.initializers  # replaced by its scaled copy, not left behind
    assert_exact_rewrite(before, after, feeds())


def test_bias_free_conv_gets_the_hard_sigmoid_offset_as_its_bias() -> None:
    model = with_weights(CONV_ACTIVATIONS, scale=1.0)
    rewrite_hard_activations(model, ALL_OPS)

    second_conv = [n for n in model.graph if n.op_type == "Conv"][1]
    np.testing.assert_allclose(second_conv.inputs[2].const_value.numpy(), np.full(4, 0.4, np.float32))


def test_conv_output_read_elsewhere_is_left_alone() -> None:
    model = with_weights(SHARED_CONV_OUTPUT, scale=1.0)
    assert rewrite_hard_activations(model, ALL_OPS) == {"HardSigmoid": 0, "HardSwish": 0}
    assert ops(model) == ["Conv", "HardSwish", "Add"]


def test_hard_swish_is_kept_when_its_replacement_ops_would_not_be_quantized() -> None:
    model = with_weights(CONV_ACTIVATIONS, scale=1.0)
    assert rewrite_hard_activations(model, ["Conv", "Clip", "Mul"]) == {"HardSigmoid": 1, "HardSwish": 0}
    assert "HardSwish" in ops(model)


def test_a_conv_kept_in_fp32_keeps_its_hard_swish() -> None:
    model = with_weights(CONV_ACTIVATIONS, scale=1.0)
    assert rewrite_hard_activations(model, ALL_OPS, {"conv_0"}) == {"HardSigmoid": 1, "HardSwish": 0}
    assert "HardSwish" in ops(model)


def test_quantized_mobilenet_has_no_float_layer_between_qdq_and_keeps_its_predictions(mobilenet) -> None:
    rng = np.random.default_rng(1)
    calibration = {"x": rng.normal(size=(32, 3, 32, 32)).astype(np.float32)}
    evaluation = {"x": rng.normal(size=(64, 3, 32, 32)).astype(np.float32)}
    expected = runtime.run(mobilenet, evaluation)["logits"]
    model = io.clone(mobilenet)
    run = QuantizeStatic().apply(model, calibration=ArrayReader(calibration))

    assert run.details["hard_activations_rewritten"] == {"HardSigmoid": 3, "HardSwish": 13}
    assert run.details["channel_gates_tiled"] == 3
    assert run.details["unfused_qdq"]["count"] == 0
    assert checks.graph_problems(model) == []
    centred = expected - expected.mean(0)  # the mean logit is shared by every image; judge what varies
    for optimization in ("disable", "all"):
        got = runtime.run(model, evaluation, optimization=optimization)["logits"]
        assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.95
        cosine = np.sum(centred * (got - expected.mean(0)), 1) / np.linalg.norm(centred, axis=1) / np.linalg.norm(got - expected.mean(0), axis=1)
        assert cosine.mean() >= 0.98


def test_an_excluded_conv_runs_in_fp32_with_its_hard_swish_fused(mobilenet) -> None:
    calibration = {"x": np.random.default_rng(1).normal(size=(16, 3, 32, 32)).astype(np.float32)}
    first_conv = next(n.name for n in mobilenet.graph if n.op_type == "Conv")
    model = io.clone(mobilenet)
    run = QuantizeStatic(exclude=[first_conv]).apply(model, calibration=ArrayReader(calibration))
    assert run.details["hard_activations_rewritten"] == {"HardSigmoid": 3, "HardSwish": 12}
    conv = next(n for n in model.graph if n.name == first_conv)
    assert [user.op_type for user, _ in conv.outputs[0].uses()] == ["HardSwish"]  # float Conv → HardSwish, which ORT fuses
    assert run.details["unfused_qdq"]["count"] == 0
