"""Guards: already-quantized and half-precision models are refused, old opsets converted or refused."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import io
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeDynamic, QuantizeStatic
from onnxcompress.passes.quantization.support.guard import (
    at_qdq_opset,
    quantized_nodes,
    refuse_half_precision,
    refuse_quantized,
)

from ..conftest import MLP_TEXT, with_weights

QLINEAR_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (uint8[2, 2] a) => (uint8[2, 2] y)
<float s = {0.1}, uint8 z = {0}>
{
    y = QLinearMatMul (a, s, z, a, s, z, s, z)
}
"""


def test_quantized_ops_are_found_and_refused() -> None:
    model = ir.serde.deserialize_model(onnx.parser.parse_model(QLINEAR_TEXT))
    assert quantized_nodes(model) == ["QLinearMatMul"]
    with pytest.raises(UsageError, match="already quantized"):
        refuse_quantized(model)


DYNAMIC_MATMUL_TEXT = """
<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[2, 2] a) => (float[2, 2] y)
<int8[2, 2] w = {1, 2, 3, 4}, float s = {0.1}>
{
    y = com.microsoft.DynamicQuantizeMatMul (a, w, s)
}
"""


def test_ort_fused_dynamic_int8_ops_count_as_quantized() -> None:
    model = ir.serde.deserialize_model(onnx.parser.parse_model(DYNAMIC_MATMUL_TEXT))
    assert quantized_nodes(model) == ["DynamicQuantizeMatMul"]


def test_float_model_passes_and_old_opset_is_converted() -> None:
    model = with_weights(MLP_TEXT.replace('"" : 17', '"" : 11'))
    refuse_quantized(model)
    converted = at_qdq_opset(io.to_proto(model))
    assert converted.opset_import[0].version == 13
    onnx.checker.check_model(converted, full_check=True)


def test_unconvertible_opset_is_refused() -> None:
    proto = onnx.parser.parse_model(MLP_TEXT.replace('"" : 17', '"" : 11'))
    proto.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(UsageError, match="opset"):
        at_qdq_opset(proto)


HALF_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float16[N, 2] x) => (float16[N, 2] y)
<float16[2, 2] w = {1, 2, 3, 4}>
{
    y = MatMul (x, w)
}
"""


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_are_refused(dtype) -> None:
    model = ir.serde.deserialize_model(onnx.parser.parse_model(HALF_TEXT.replace("float16", dtype)))
    with pytest.raises(UsageError, match=rf"^model computes in {dtype} \(1 weights, e.g. 'w'\); .*`-p upcast` before this step .* quantize the FP32 model$"):
        refuse_half_precision(model)


def test_weights_only_stored_in_half_precision_pass() -> None:
    """float16 storage cast to float32 before use (halving the file): the quantizers see an FP32 model."""
    stored = HALF_TEXT.replace("float16[N, 2] x", "float[N, 2] x").replace("float16[N, 2] y", "float[N, 2] y")
    stored = stored.replace("y = MatMul (x, w)", "w32 = Cast <to = 1> (w)\n    y = MatMul (x, w32)")
    model = ir.serde.deserialize_model(onnx.parser.parse_model(stored))
    refuse_half_precision(model)
    samples = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    quantized = QuantizeStatic(accept_loss=True).apply(model, calibration=ArrayReader({"x": samples})).model
    assert quantized_nodes(quantized)


@pytest.mark.parametrize("quantizer", [QuantizeDynamic, QuantizeStatic])
def test_both_quantizers_refuse_a_float16_model_in_one_line(quantizer) -> None:
    """Before the guard the dynamic quantizer wrote a graph ORT could not load and the static one failed inside ORT."""
    model = ir.serde.deserialize_model(onnx.parser.parse_model(HALF_TEXT))
    with pytest.raises(UsageError, match="^model computes in float16"):
        quantizer().apply(model, calibration={"x": np.ones((8, 2), np.float16)})
