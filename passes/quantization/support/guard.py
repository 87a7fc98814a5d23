"""What must hold before quantizing: a float model, not already quantized, at an opset QDQ supports.

ORT's quantizer silently rewrites an older model's opset number without converting its ops (a
Softmax or Squeeze below opset 13 then means something else): we convert with onnx's version
converter first (``io.upgraded_opset``), and refuse when that fails, so an invalid model is never written.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.errors import UsageError
from onnxcompress.passes.upcast import half_precision_weights

QDQ_OPSET = 13  # per-channel DequantizeLinear (axis) needs opset 13
QDQ_PURPOSE = "per-channel quantization"
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
QUANTIZED_PREFIXES = ("QLinear", "QAttention", "QGemm", "DynamicQuantize")  # ORT's contrib int8 ops


def quantized_nodes(model: ir.Model) -> list[str]:
    """Names (or op types) of nodes that show the model is already quantized."""
    found = []
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        op = node.op_type
        if op in QUANTIZED_OPS or op.startswith(QUANTIZED_PREFIXES) or op.endswith(("Integer", "IntegerToFloat")):
            found.append(node.name or op)
    return found


def refuse_quantized(model: ir.Model) -> None:
    """Raise a one-line ``UsageError`` when ``model`` already holds quantized ops."""
    found = quantized_nodes(model)
    if found:
        raise UsageError(
            f"model is already quantized ({len(found)} quantized nodes, e.g. {found[0]!r}); quantize the FP32 model"
        )


def refuse_half_precision(model: ir.Model) -> None:
    """Raise a one-line ``UsageError`` when ``model`` computes with float16 or bfloat16 weights: ORT's INT8 quantizers
    take FP32 models (on float16 ones the dynamic quantizer writes a graph ORT cannot load and the static one fails).
    Weights only stored in half precision (every reader a ``Cast``) are FP32 to the quantizers and pass."""
    half = half_precision_weights(model)
    if half:
        raise UsageError(f"model computes in {half[0].dtype.name.lower()} ({len(half)} weights, e.g. {half[0].name!r}); "
                         "ONNX Runtime's INT8 quantizers take FP32 models: put `-p upcast` before this step "
                         "(float32 inside, the interface kept), or quantize the FP32 model")


def at_qdq_opset(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` converted to at least opset 13 (returned unchanged when already there)."""
    return io.upgraded_opset(proto, QDQ_OPSET, QDQ_PURPOSE)
