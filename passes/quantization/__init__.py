"""INT8 quantization passes: ``quantize-static`` (QDQ, calibrated) and ``quantize-dynamic``."""

from onnxcompress.passes.quantization.dynamic import QuantizeDynamic
from onnxcompress.passes.quantization.static import QuantizeStatic

__all__ = ["QuantizeDynamic", "QuantizeStatic"]
