"""Per-row quantizers: ``scale-tokens`` activations become one blocked ``QuantizeLinear`` each from opset 21."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes import FoldConstants, PassOutcome, QuantizeDynamic, ScaleTokens

from ..conftest import token_inputs, tokens_model


def quantized(opset: int, *, scale_tokens: bool = True) -> tuple[ir.Model, PassOutcome]:
    model = tokens_model(opset)
    if scale_tokens:
        ScaleTokens().apply(model, calibration=ArrayReader(token_inputs(0)))
    return model, QuantizeDynamic()(model)


def relative_error(model: ir.Model, optimization: str = "all") -> float:
    feeds = token_inputs(2)
    expected = runtime.run(tokens_model(), feeds)["y"]
    got = runtime.run(model, feeds, optimization=optimization)["y"]
    return float(np.sum((got - expected) ** 2) / np.sum(expected ** 2))


def ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def test_scaled_rows_are_quantized_in_one_blocked_quantize_linear() -> None:
    model, run = quantized(21)
    assert run.details["row_quantized_activations"] == 2
    quantizers = [node for node in model.graph if node.op_type == "QuantizeLinear"]
    assert [q.attributes.get_int("block_size") for q in quantizers] == [32, 32]
    assert "DynamicQuantizeLinear" not in ops(model) and "Reciprocal" not in ops(model)
    assert ops(model).count("MatMulIntegerToFloat") == 2
    zero_points = sorted(int(q.inputs[2].producer().inputs[0].const_value.numpy().item()) for q in quantizers)
    assert zero_points == [51, 128]  # the Relu output's rows span [-1/4, 1], the input's [-1, 1]


def test_row_quantizers_keep_the_error_of_dynamic_per_token_scales() -> None:
    rows, _ = quantized(21)
    dynamic, _ = quantized(18)  # no blocked QuantizeLinear before opset 21: the Mul and dynamic quantizers stay
    plain, _ = quantized(21, scale_tokens=False)
    for level in ("disable", "all"):
        assert relative_error(rows, level) == pytest.approx(relative_error(dynamic), rel=0.2)
    assert relative_error(rows) < 0.5 * relative_error(plain)


def test_below_opset_21_dynamic_quantizers_stay() -> None:
    model, run = quantized(18)
    assert run.details["row_quantized_activations"] == 0
    assert ops(model).count("DynamicQuantizeLinear") == 2


# scale-tokens' pattern written by hand, with the row peak taken over the axis ``axes`` names.
ROW_SCALE_TEXT = """
<ir_version: 8, opset_import: ["" : 21]>
rows (float[N, 6, 32] x) => (float[N, 6, 8] y)
<int64[1] axes = {%%d}, float floor = {1e-12}>
{
    a = Abs (x)
    p = ReduceMax <keepdims = 1> (a, axes)
    s = Max (p, floor)
    i = Reciprocal (s)
    d = Mul (x, i)
    w = Constant <value = float[32, 8] {%s}> ()
    y = MatMul (d, w)
}
""" % ", ".join(str(v) for v in np.random.default_rng(0).normal(size=32 * 8).round(3))


@pytest.mark.parametrize("axis, replaced", [(-1, 1), (2, 1), (1, 0)])
def test_only_a_scale_per_row_of_the_last_axis_is_quantized_per_row(axis, replaced) -> None:
    model = ir.serde.deserialize_model(onnx.parser.parse_model(ROW_SCALE_TEXT % axis))
    FoldConstants()(model)
    assert QuantizeDynamic()(model).details["row_quantized_activations"] == replaced
    assert ("DynamicQuantizeLinear" in ops(model)) == (not replaced)


@pytest.mark.slow
def test_minilm_rows_are_quantized_per_row_and_closer_to_fp32(minilm_onnx, minilm_feeds) -> None:
    from onnxcompress import fidelity, io
    from onnxcompress.passes import Fuse

    from ..conftest import minilm_calibration

    fp32 = io.load(minilm_onnx)
    expected = runtime.run(fp32, minilm_feeds)["sentence_embedding"]
    fused = io.clone(fp32)
    Fuse(opset=23)(fused)
    plain, rows = io.clone(fused), io.clone(fused)
    ScaleTokens().apply(rows, calibration=minilm_calibration())
    QuantizeDynamic()(plain)
    assert QuantizeDynamic()(rows).details["row_quantized_activations"] >= 1 and "QuantizeLinear" in ops(rows)

    def cosine(model: ir.Model, optimization: str = "all") -> float:
        got = runtime.run(model, minilm_feeds, optimization=optimization)["sentence_embedding"]
        return fidelity.compare({"e": expected}, {"e": got}).cosine

    assert cosine(rows, "disable") == pytest.approx(cosine(rows), abs=1e-4)
    assert cosine(rows) > cosine(plain)
