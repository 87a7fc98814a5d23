"""Graph passes, one module per family; importing this package registers them all."""

from onnxcompress.passes.base import REGISTRY, CompressionPass, PassContext, PassOutcome
from onnxcompress.passes.cleanup import Cleanup
from onnxcompress.passes.fold_constants import FoldConstants
from onnxcompress.passes.fusion import Fuse
from onnxcompress.passes.pruning import PruneChannels
from onnxcompress.passes.remove_initializer_inputs import RemoveInitializerInputs
from onnxcompress.passes.quantization import QuantizeDynamic, QuantizeStatic, ScaleTokens, SmoothActivations, SplitOutlierChannels
from onnxcompress.passes.training.recover import Recover
from onnxcompress.passes.upcast import Upcast

__all__ = ["REGISTRY", "Cleanup", "CompressionPass", "FoldConstants", "Fuse", "PassContext", "PassOutcome", "PruneChannels", "QuantizeDynamic", "QuantizeStatic", "Recover", "RemoveInitializerInputs", "ScaleTokens", "SmoothActivations", "SplitOutlierChannels", "Upcast"]
