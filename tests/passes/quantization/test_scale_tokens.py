"""``scale-tokens``: exact in FP32, chosen where the simulation says it pays, and dynamic INT8 error lower after it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import PassOutcome, QuantizeDynamic, ScaleTokens
from onnxcompress.passes.quantization import scale_tokens
from onnxcompress.passes.quantization.support.target import cpu_kernel
from onnxcompress.passes.quantization.scale_tokens import simulate

from .conftest import assert_exact_and_better_for_int8, kernel_for, minilm_calibration, token_inputs as inputs, tokens_model


def scaled(model: ir.Model, **options) -> tuple[ir.Model, PassOutcome]:
    copy = io.clone(model)
    return copy, ScaleTokens(**options).apply(copy, calibration=ArrayReader(inputs(0)))


@pytest.mark.parametrize("opset", [17, 18])
def test_per_token_scales_are_exact(assert_exact_rewrite, opset) -> None:
    before = tokens_model(opset)
    after, run = scaled(before)
    assert run.details["activations"] == 2
    assert_exact_rewrite(before, after, inputs(1))


def test_one_sided_activation_skips_the_abs_pass() -> None:
    after, _ = scaled(tokens_model())
    abs_inputs = [node.inputs[0].name for node in after.graph if node.op_type == "Abs"]
    assert abs_inputs == ["x"]  # the Relu output is bounded below by 0: its row max bounds it
    assert sum(node.op_type == "ReduceMax" for node in after.graph) == 2


def test_per_token_scales_lower_the_dynamic_int8_error() -> None:
    reference = tokens_model()
    plain = io.clone(reference)
    rewritten, _ = scaled(reference)
    for model in (plain, rewritten):
        QuantizeDynamic()(model)
    feeds = inputs(2)
    expected = runtime.run(reference, feeds)["y"]

    def squared_error(model: ir.Model) -> float:
        return float(np.mean((runtime.run(model, feeds)["y"] - expected) ** 2))

    assert squared_error(rewritten) < 0.5 * squared_error(plain)


@pytest.mark.parametrize("flags", [{"avx2", "avx512_vnni"}, {"avx2"}])
def test_errors_are_simulated_for_the_kernel_this_cpu_runs(monkeypatch, flags) -> None:
    kernel = cpu_kernel(machine="x86_64", cpu_flags=flags)
    monkeypatch.setattr(scale_tokens, "cpu_kernel", lambda: kernel)
    model = tokens_model()
    _, run = scaled(model)
    hidden = np.maximum(inputs(0)["x"] @ model.graph.initializers["wa"].const_value.numpy(), 0)  # one calibration batch
    effect = simulate(hidden, [next(node for node in model.graph if node.name == "matmul_2")], kernel)
    assert run.details["errors"]["r"] == pytest.approx({"per_tensor": effect.per_tensor, "per_token": effect.per_token}, rel=1e-3)


def test_simulated_per_token_error_is_what_ort_gives(reduce_range) -> None:
    model = tokens_model()
    feeds = inputs(3, count=1)
    hidden = np.maximum(feeds["x"] @ model.graph.initializers["wa"].const_value.numpy(), 0)
    rewritten, _ = scaled(model)
    QuantizeDynamic(exclude=["matmul_0"], reduce_range=reduce_range)(rewritten)  # only the second MatMul is INT8, as simulated
    expected = runtime.run(model, feeds)["y"]
    measured = float(np.sum((runtime.run(rewritten, feeds)["y"] - expected) ** 2) / np.sum(expected ** 2))
    matmul = next(node for node in model.graph if node.name == "matmul_2")
    assert simulate(hidden, [matmul], kernel_for(reduce_range)).per_token == pytest.approx(measured, rel=0.05)


def test_nothing_is_rewritten_when_no_activation_gains_enough() -> None:
    flat = {"x": np.random.default_rng(0).normal(size=(16, 6, 32)).astype(np.float32)}  # every row the same size
    model = tokens_model()
    run = ScaleTokens(min_cut=0.5).apply(model, calibration=ArrayReader(flat))
    assert run.details["activations"] == 0 and not any(n.op_type == "ReduceMax" for n in model.graph)


@pytest.mark.parametrize("min_cut", [1.5, -0.1, float("nan")])
def test_bad_min_cut_is_refused_when_built(min_cut) -> None:
    with pytest.raises(UsageError, match=r"scale-tokens: min_cut must be in \[0, 1\]"):
        ScaleTokens(min_cut=min_cut)


def test_without_calibration_it_is_refused_before_it_starts() -> None:
    with pytest.raises(UsageError, match="scale-tokens needs calibration data"):
        ScaleTokens()(tokens_model())


@pytest.mark.slow
def test_minilm_token_scales_are_exact_and_help_dynamic_int8(minilm_onnx, minilm_feeds) -> None:
    reference = io.load(minilm_onnx)
    rewritten = io.clone(reference)
    assert ScaleTokens().apply(rewritten, calibration=minilm_calibration()).details["activations"] >= 1
    assert_exact_and_better_for_int8(reference, rewritten, minilm_feeds)
