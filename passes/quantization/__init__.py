"""INT8 quantization passes: ``quantize-static`` (QDQ, calibrated), ``quantize-dynamic``, and ``split-outliers``,
``smooth`` and ``scale-tokens`` before them."""

from onnxcompress.passes.quantization.dynamic import QuantizeDynamic
from onnxcompress.passes.quantization.outliers import SplitOutlierChannels
from onnxcompress.passes.quantization.smoothing import SmoothActivations
from onnxcompress.passes.quantization.static import QuantizeStatic
from onnxcompress.passes.quantization.token_scales import ScaleTokens

__all__ = ["QuantizeDynamic", "QuantizeStatic", "ScaleTokens", "SmoothActivations", "SplitOutlierChannels"]
