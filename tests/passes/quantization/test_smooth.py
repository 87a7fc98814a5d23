"""``smooth``: exact in FP32, one Mul per smoothed activation, and dynamic INT8 error lower after it."""

from __future__ import annotations

import copy

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeDynamic, SmoothActivations
from onnxcompress.passes.quantization import smooth
from onnxcompress.passes.quantization.smooth import dynamic_int8_error, smoothing_scales
from onnxcompress.passes.quantization.support.target import cpu_kernel

from .conftest import MLP_TEXT, assert_exact_and_better_for_int8, kernel_for, minilm_calibration, with_weights

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
    run = SmoothActivations(alpha=0.5).apply(after, calibration=ArrayReader(inputs(0)))  # a fixed alpha smooths every activation
    assert_exact_rewrite(before, after, inputs(1))
    assert run.details["activations"] == 2
    muls = [n for n in after.graph if n.op_type == "Mul"]
    assert len(muls) == 2
    shared = next(m for m in muls if m.inputs[0].name == "h")
    assert {user.op_type for user, _ in shared.outputs[0].uses()} == {"MatMul"} and len(shared.outputs[0].uses()) == 2
    assert [user.op_type for user, _ in after.graph.node(0).outputs[0].uses()].count("Add") == 1  # residual untouched
    assert not {"wq", "wk", "wo"} & set(after.graph.initializers)  # the replaced weights are gone, not doubled


def test_smoothing_lowers_the_dynamic_int8_error() -> None:
    reference = block_with_outlier_channels()
    plain, smoothed = io.clone(reference), io.clone(reference)
    SmoothActivations().apply(smoothed, calibration=ArrayReader(inputs(0)))
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


@pytest.mark.parametrize("alpha", [1.5, -0.5, float("nan")])
def test_bad_alpha_is_refused_when_built(alpha) -> None:
    with pytest.raises(UsageError, match=r"smooth: alpha must be in \[0, 1\]"):
        SmoothActivations(alpha=alpha)


def test_without_calibration_it_is_refused_before_it_starts() -> None:
    with pytest.raises(UsageError, match="smooth needs calibration data"):
        SmoothActivations()(block_with_outlier_channels())


def test_a_second_run_uses_its_own_calibration_and_leaves_the_pass_as_built() -> None:
    pass_ = SmoothActivations(alpha=0.5)
    built = copy.deepcopy(vars(pass_))
    first, second, fresh = (block_with_outlier_channels() for _ in range(3))
    pass_.apply(first, calibration=ArrayReader(inputs(0)))
    later = ArrayReader({"x": inputs(7)["x"] * np.linspace(0.1, 3.0, 32, dtype=np.float32)})
    pass_.apply(second, calibration=later)
    SmoothActivations(alpha=0.5).apply(fresh, calibration=later)
    assert weights(second) == weights(fresh) and weights(second) != weights(first)
    assert vars(pass_) == built


def weights(model: ir.Model) -> dict[str, bytes]:
    """Every initializer's bytes by name."""
    return {name: value.const_value.numpy().tobytes() for name, value in model.graph.initializers.items()}


@pytest.mark.slow
def test_minilm_smoothing_is_exact_and_helps_dynamic_int8(minilm_onnx, minilm_feeds) -> None:
    reference = io.load(minilm_onnx)
    smoothed = io.clone(reference)
    SmoothActivations().apply(smoothed, calibration=minilm_calibration())
    assert_exact_and_better_for_int8(reference, smoothed, minilm_feeds)


def test_activations_without_outliers_are_left_alone() -> None:
    model = with_weights(BLOCK_TEXT)
    gamma = model.graph.initializers["gamma"]
    gamma.const_value = ir.tensor(np.ones(32, np.float32), name="gamma")
    run = SmoothActivations().apply(model, calibration=ArrayReader(inputs(0)))
    assert "h" not in run.details["alphas"]  # a flat LayerNorm output gains nothing from a Mul
    assert not any(n.op_type == "Mul" and n.inputs[0].name == "h" for n in model.graph)


@pytest.mark.parametrize(("flags", "smoothed"), [({"avx2", "avx512_vnni"}, {"h", "r"}), ({"avx2"}, {"h"})])
def test_alpha_is_chosen_for_the_kernel_this_cpu_runs(monkeypatch, flags, smoothed) -> None:
    # On 7-bit weights (no VNNI) the range moved into the Relu output's weights costs more than it saves there.
    monkeypatch.setattr(smooth, "cpu_kernel", lambda: cpu_kernel(machine="x86_64", cpu_flags=flags))
    run = SmoothActivations().apply(block_with_outlier_channels(), calibration=ArrayReader(inputs(0)))
    assert set(run.details["alphas"]) == smoothed


def test_simulated_int8_error_is_what_ort_gives(reduce_range) -> None:
    model = with_weights(MLP_TEXT)
    feeds = {"x": np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)}
    expected = runtime.run(model, feeds)["y"]
    quantized = io.clone(model)
    QuantizeDynamic(exclude=["matmul_0"], reduce_range=reduce_range)(quantized)
    hidden = feeds["x"] @ model.graph.initializers["wa"].const_value.numpy()  # matmul_0 stays FP32
    weight = model.graph.initializers["wb"].const_value.numpy()
    measured = float(np.sum((runtime.run(quantized, feeds)["y"] - expected) ** 2) / np.sum(expected ** 2))
    simulated = dynamic_int8_error(hidden[None], [weight], [hidden[None] @ weight], kernel_for(reduce_range))
    assert simulated == pytest.approx(measured, rel=0.05)


# ONNX Attention over 3-D projections; V has a bias, and its columns 3 and 5 are large (outlier context channels).
ATTENTION_TEXT = """
<ir_version: 10, opset_import: ["" : 23]>
attention (float[N, 6, 32] x) => (float[N, 6, 32] y)
<float[32, 32] wq = {0.0}, float[32, %(kv)d] wk = {0.0}, float[32, %(kv)d] wv = {0.0}, float[%(kv)d] bv = {0.0}, float[32, 32] wo = {0.0}>
{
    q = MatMul (x, wq)
    k = MatMul (x, wk)
    projected = MatMul (x, wv)
    v = Add (projected, bv)
    context = Attention <q_num_heads = 4, kv_num_heads = %(heads)d> (q, k, v)
    y = MatMul (context, wo)
}
"""


def attention_block(kv_heads: int) -> ir.Model:
    model = with_weights(ATTENTION_TEXT % {"kv": 8 * kv_heads, "heads": kv_heads})
    weight = model.graph.initializers["wv"]
    outliers = weight.const_value.numpy().copy()
    outliers[:, [3, 5]] *= 40.0
    weight.const_value = ir.tensor(outliers, name="wv")
    return model


def test_an_attention_context_is_smoothed_in_the_value_projection(assert_exact_rewrite) -> None:
    before = attention_block(kv_heads=4)
    after = io.clone(before)
    run = SmoothActivations(alpha=0.5).apply(after, calibration=ArrayReader(inputs(0)))
    assert_exact_rewrite(before, after, inputs(1))
    assert run.details["activations"] == 2
    context = next(node for node in after.graph if node.op_type == "Attention").outputs[0]
    assert [use.node.op_type for use in context.uses()] == ["MatMul"]  # no Mul: 1/s went into wv and bv
    assert not {"wv", "bv"} & set(after.graph.initializers)
    assert "folded into attention value projections" in run.notes[0]


def test_grouped_heads_keep_the_context_mul(assert_exact_rewrite) -> None:
    before = attention_block(kv_heads=2)  # each V channel feeds two query heads' context channels
    after = io.clone(before)
    SmoothActivations(alpha=0.5).apply(after, calibration=ArrayReader(inputs(0)))
    assert_exact_rewrite(before, after, inputs(1))
    context = next(node for node in after.graph if node.op_type == "Attention").outputs[0]
    assert [use.node.op_type for use in context.uses()] == ["Mul"]


@pytest.mark.slow  # the chain calibrates four passes on a real export (~40 s each on 2 cores)
@pytest.mark.parametrize("name", ["torch-encoder-legacy", "torch-encoder-dynamo"])
def test_recommended_transformer_chain_keeps_pytorchs_encoder_at_cosine_099(name) -> None:
    """PyTorch's nn.TransformerEncoder through the chain ``recommend`` prints for transformers (the README's),
    calibrated on the entry's own sentences: its held-out sentence embeddings keep mean cosine >= 0.99."""
    import onnxcompress as oc
    from onnxcompress.models.hardening import ENTRIES
    from onnxcompress.cpu import CpuFeatures
    from onnxcompress.recommend import plan

    entry = ENTRIES[name]
    steps = [step.spec for step in plan("transformer-encoder", CpuFeatures("x86_64", frozenset({"avx2"})))]
    assert steps[-1].startswith("quantize-dynamic") and "smooth" in steps and "scale-tokens" in steps
    model = io.load(entry.model())
    held_out = entry.feeds("held-out", 32)
    measurement = oc.Measurement(benchmark=False, feeds={k: v[:4] for k, v in held_out.items()})  # the legacy export runs at 32 tokens only
    result = oc.run(io.clone(model), steps, calibration=ArrayReader(entry.feeds("calibration", 32)), measurement=measurement)
    assert {"Attention"} <= {node.op_type for node in result.model.graph}
    want = runtime.run(model, held_out)["sentence_embedding"]
    got = runtime.run(result.model, held_out)["sentence_embedding"]
    cosine = np.sum(want * got, axis=1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.mean() >= 0.99
