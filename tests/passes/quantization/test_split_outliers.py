"""``split-outliers``: exact in FP32, the outlier branch stays FP32 through quantization, and INT8 error falls."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import PassOutcome, QuantizeDynamic, SplitOutlierChannels
from onnxcompress.passes.quantization.split_outliers import outlier_channels, splittable_pairs

from .conftest import assert_exact_and_better_for_int8, minilm_calibration, with_weights

# A transformer FFN: LayerNorm → MatMul + bias → erf GELU (as exported) → MatMul + bias → residual Add.
FFN_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
ffn (float[N, 6, 16] x) => (float[N, 6, 16] y)
<float[16] gamma = {0.0}, float[16] beta = {0.0}, float[16, 64] w1 = {0.0}, float[64] b1 = {0.0},
 float[64, 16] w2 = {0.0}, float[16] b2 = {0.0}, float sqrt2 = {1.4142135}, float one = {1.0}, float half = {0.5}>
{
    h = LayerNormalization <axis = -1> (x, gamma, beta)
    m1 = MatMul (h, w1)
    a1 = Add (b1, m1)
    d = Div (a1, sqrt2)
    e = Erf (d)
    p = Add (e, one)
    g0 = Mul (a1, p)
    g = Mul (g0, half)
    m2 = MatMul (g, w2)
    a2 = Add (b2, m2)
    y = Add (a2, h)
}
"""
OUTLIERS = [5, 40]


def ffn_with_outlier_channels() -> ir.Model:
    """The FFN with two hidden channels whose W1 columns are 30x larger: GELU outputs peaking like BERT's."""
    model = with_weights(FFN_TEXT)
    initializers = model.graph.initializers
    for name, value in (("sqrt2", np.sqrt(2.0)), ("one", 1.0), ("half", 0.5), ("beta", np.zeros(16))):
        initializers[name].const_value = ir.tensor(np.asarray(value, np.float32), name=name)
    initializers["gamma"].const_value = ir.tensor(np.ones(16, np.float32), name="gamma")
    w1 = initializers["w1"].const_value.numpy().copy()
    w1[:, OUTLIERS] *= 30.0
    initializers["w1"].const_value = ir.tensor(w1, name="w1")
    return model


def inputs(seed: int, count: int = 16) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(size=(count, 6, 16)).astype(np.float32)}


def split(model: ir.Model, **options) -> PassOutcome:
    return SplitOutlierChannels(**options).apply(model, calibration=ArrayReader(inputs(0)))


def test_split_is_exact_and_puts_the_outlier_channels_in_a_float_branch(assert_exact_rewrite) -> None:
    before = ffn_with_outlier_channels()
    after = io.clone(before)
    run = split(after)
    assert_exact_rewrite(before, after, inputs(1))
    assert run.details["split"] == {"matmul_8": 2}
    weights = {n.name: n.inputs[1].const_value.shape for n in after.graph if n.op_type == "MatMul"}
    assert weights == {"matmul_1/outliers": (16, 2), "matmul_8/outliers": (2, 16),
                       "matmul_1/inliers": (16, 62), "matmul_8/inliers": (62, 16)}
    assert [n.op_type for n in after.graph].count("Erf") == 2  # the GELU runs on each branch
    assert not {"w1", "w2", "b1"} & set(after.graph.initializers)  # replaced constants are dropped
    assert "sqrt2" in after.graph.initializers  # scalar constants are shared by both branches


def test_an_opset_20_gelu_is_split_too(assert_exact_rewrite) -> None:
    text = FFN_TEXT.replace('"" : 17', '"" : 20').replace(
        "    d = Div (a1, sqrt2)\n    e = Erf (d)\n    p = Add (e, one)\n    g0 = Mul (a1, p)\n    g = Mul (g0, half)\n",
        "    g = Gelu <approximate = \"tanh\"> (a1)\n")
    before = with_weights(text)
    w1 = before.graph.initializers["w1"].const_value.numpy().copy()
    w1[:, OUTLIERS] *= 30.0
    before.graph.initializers["w1"].const_value = ir.tensor(w1, name="w1")
    after = io.clone(before)
    assert split(after).details["split"] == {"matmul_4": 2}
    assert [n.attributes["approximate"].value for n in after.graph if n.op_type == "Gelu"] == ["tanh", "tanh"]
    assert_exact_rewrite(before, after, inputs(1))


def test_quantizers_leave_the_outlier_branch_in_fp32_and_the_error_falls() -> None:
    reference = ffn_with_outlier_channels()
    plain, with_split = io.clone(reference), io.clone(reference)
    split(with_split)
    for model in (plain, with_split):
        QuantizeDynamic()(model)
    integer_inputs = {n.inputs[1].name for n in with_split.graph if n.op_type == "MatMulInteger"}
    assert len(integer_inputs) == 2 and not any("outliers" in name for name in integer_inputs)
    assert [n.name for n in with_split.graph if n.op_type == "MatMul"] == ["matmul_1/outliers", "matmul_8/outliers"]
    feeds = inputs(2)
    expected = runtime.run(reference, feeds)["y"]

    def squared_error(model: ir.Model) -> float:
        return float(np.mean((runtime.run(model, feeds)["y"] - expected) ** 2))

    assert squared_error(with_split) < 0.5 * squared_error(plain)


def test_bias_add_stays_on_the_int8_branch_for_ort_to_fuse() -> None:
    model = ffn_with_outlier_channels()
    split(model)
    bias_add = next(n for n in model.graph if n.inputs and n.inputs[0] is not None and n.inputs[0].name == "b2")
    assert bias_add.inputs[1].producer().name == "matmul_8/inliers"
    assert [user.name for user, _ in bias_add.outputs[0].uses()] == ["matmul_8/sum"]


def test_a_split_matmul_can_be_the_graph_output(assert_exact_rewrite) -> None:
    text = FFN_TEXT.replace("(float[N, 6, 16] y)", "(float[N, 6, 16] m2)").replace("    a2 = Add (b2, m2)\n    y = Add (a2, h)\n", "")
    before = with_weights(text.replace("float[16] b2 = {0.0}, ", ""))
    w1 = before.graph.initializers["w1"].const_value.numpy() * np.where(np.arange(64) == 7, 30.0, 1.0)
    before.graph.initializers["w1"].const_value = ir.tensor(w1.astype(np.float32), name="w1")
    after = io.clone(before)
    split(after)
    assert_exact_rewrite(before, after, inputs(1))
    assert [v.name for v in after.graph.outputs] == ["m2"]


def test_of_chained_pairs_the_second_is_left_alone_with_a_note(assert_exact_rewrite) -> None:
    # a classifier head (Keras VGG16 in the corpus): MatMul → Relu → MatMul → Relu → MatMul; the middle MatMul
    # ends the first pair and starts the second, and splitting the first removes it
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    head (float[N, 16] x) => (float[N, 4] y)
    <float[16, 32] w1 = {0.0}, float[32, 32] w2 = {0.0}, float[32, 4] w3 = {0.0}>
    {
        m1 = MatMul (x, w1)
        r1 = Relu (m1)
        m2 = MatMul (r1, w2)
        r2 = Relu (m2)
        y = MatMul (r2, w3)
    }
    """
    before = with_weights(text)
    for name in ("w1", "w2"):
        weight = before.graph.initializers[name].const_value.numpy() * np.where(np.arange(32) == 3, 30.0, 1.0)
        before.graph.initializers[name].const_value = ir.tensor(weight.astype(np.float32), name=name)
    after = io.clone(before)
    feeds = {"x": np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32)}
    run = SplitOutlierChannels().apply(after, calibration=ArrayReader(feeds))
    assert_exact_rewrite(before, after, feeds)
    assert list(run.details["split"]) == ["matmul_2"]
    assert any("left 1 MatMul pairs alone" in note and note.endswith(": matmul_4") for note in run.notes)


@pytest.mark.parametrize("options", [{"min_ratio": 50.0}, {"exclude": ["matmul_8"]}, {"exclude": ["matmul_1"]}])
def test_flat_or_excluded_pairs_are_left_alone(options) -> None:
    model = ffn_with_outlier_channels()
    run = split(model, **options)
    assert run.details["split"] == {} and {"matmul_1", "matmul_8"} <= {n.name for n in model.graph}


@pytest.mark.parametrize("text", [
    # the hidden activation also feeds the output: splitting it would need a copy
    FFN_TEXT.replace("y = Add (a2, h)", "t = Add (a2, h)\n    r = ReduceMean <axes = [2]> (g)\n    y = Add (t, r)"),
    # a LayerNorm (not channel-wise) between the MatMuls
    FFN_TEXT.replace("g = Mul (g0, half)", "g = LayerNormalization <axis = -1> (g0, b1, b1)"),
])
def test_pairs_that_cannot_be_split_are_not_candidates(text) -> None:
    assert splittable_pairs(with_weights(text), set()) == []


def test_outlier_channels_are_the_largest_peaks_over_the_ratio() -> None:
    peaks = np.array([1.0, 9.0, 1.0, 30.0, 1.2, 5.0, 1.1])
    assert outlier_channels(peaks, most=4, min_ratio=4.0).tolist() == [1, 3, 5]
    assert outlier_channels(peaks, most=1, min_ratio=4.0).tolist() == [3]
    assert outlier_channels(np.ones(8), most=4, min_ratio=4.0).tolist() == []


@pytest.mark.parametrize("options, message", [({"channels": 0}, "split-outliers: channels must be at least 1"),
                                              ({"min_ratio": 0.5}, "split-outliers: min_ratio must be at least 1")])
def test_bad_options_are_refused_when_built(options, message) -> None:
    with pytest.raises(UsageError, match=message):
        SplitOutlierChannels(**options)


def test_without_calibration_it_is_refused_before_it_starts() -> None:
    with pytest.raises(UsageError, match="split-outliers needs calibration data"):
        SplitOutlierChannels()(ffn_with_outlier_channels())


@pytest.mark.slow
def test_minilm_split_is_exact_and_lowers_the_dynamic_int8_error(minilm_onnx, minilm_feeds) -> None:
    reference = io.load(minilm_onnx)
    with_split = io.clone(reference)
    assert SplitOutlierChannels().apply(with_split, calibration=minilm_calibration()).details["split"]
    assert_exact_and_better_for_int8(reference, with_split, minilm_feeds)
