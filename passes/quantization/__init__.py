"""INT8 quantization: one module per pass, named after it (``quantize-static``, ``quantize-dynamic``, and the
exact passes that prepare for them: ``smooth``, ``scale-tokens``, ``split-outliers``); ``quantize_pass`` is the
base the two quantizers share, and ``support/`` holds the pieces the passes are built from."""

from onnxcompress.passes.quantization.quantize_dynamic import QuantizeDynamic
from onnxcompress.passes.quantization.quantize_static import QuantizeStatic
from onnxcompress.passes.quantization.scale_tokens import ScaleTokens
from onnxcompress.passes.quantization.smooth import SmoothActivations
from onnxcompress.passes.quantization.split_outliers import SplitOutlierChannels

__all__ = ["QuantizeDynamic", "QuantizeStatic", "ScaleTokens", "SmoothActivations", "SplitOutlierChannels"]
