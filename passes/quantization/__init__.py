"""INT8 quantization passes: ``quantize-static`` (QDQ, calibrated), ``quantize-dynamic``, and ``smooth`` before them."""

from onnxcompress.passes.quantization.dynamic import QuantizeDynamic
from onnxcompress.passes.quantization.smoothing import SmoothActivations
from onnxcompress.passes.quantization.static import QuantizeStatic

__all__ = ["QuantizeDynamic", "QuantizeStatic", "SmoothActivations"]
