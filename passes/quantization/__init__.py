"""INT8 quantization passes: ``quantize-static`` (QDQ, calibrated), ``quantize-dynamic``, and ``smooth`` and
``split-outliers`` before them."""

from onnxcompress.passes.quantization.dynamic import QuantizeDynamic
from onnxcompress.passes.quantization.outliers import SplitOutlierChannels
from onnxcompress.passes.quantization.smoothing import SmoothActivations
from onnxcompress.passes.quantization.static import QuantizeStatic

__all__ = ["QuantizeDynamic", "QuantizeStatic", "SmoothActivations", "SplitOutlierChannels"]
