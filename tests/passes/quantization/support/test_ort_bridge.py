"""ort_bridge: what ORT's quantizers are handed; here, value types past the com.microsoft ops onnx cannot infer."""

from __future__ import annotations

import numpy as np

from onnxcompress import io
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes.quantization.quantize_static import QuantizeStatic
from onnxcompress.passes.quantization.support import ort_bridge

from ...pruning.conftest import text_model

# What ORT's transformer optimizer leaves before a classifier: a fused SkipLayerNormalization, then a Gemm with a bias.
FUSED_BEFORE_CLASSIFIER = """<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[N, 16] x, float[N, 16] s) => (float[N, 4] y) {
  n = com.microsoft.SkipLayerNormalization (x, s, gamma, beta)
  h = MatMul (n, w1)
  r = Relu (h)
  y = Gemm (r, w2, b2)
}"""
WEIGHTS = {"gamma": (16,), "beta": (16,), "w1": (16, 16), "w2": (16, 4), "b2": (4,)}


def test_values_after_an_op_onnx_cannot_infer_are_typed_for_calibration():
    proto = ort_bridge.with_shapes(io.to_proto(text_model(FUSED_BEFORE_CLASSIFIER, WEIGHTS)))
    assert {"n", "h", "r"} <= set(ort_bridge.tensors_to_calibrate(proto, ["MatMul", "Gemm"]))


def test_a_classifier_after_a_fused_op_quantizes():
    """ORT's quantizer failed on the Gemm's bias ('Unable to get valid quantization scale') when its input was
    never calibrated: an internal error on ViT after ORT's optimizer."""
    model = text_model(FUSED_BEFORE_CLASSIFIER, WEIGHTS)
    rng = np.random.default_rng(0)
    samples = {"x": rng.standard_normal((32, 16)).astype(np.float32), "s": rng.standard_normal((32, 16)).astype(np.float32)}
    quantized = QuantizeStatic(accept_loss=True).apply(model, calibration=ArrayReader(samples)).model
    gemm = next(node for node in quantized.graph if node.op_type == "Gemm")
    assert gemm.inputs[0].producer().op_type == "DequantizeLinear"  # its activation is INT8 too
