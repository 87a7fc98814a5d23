"""Conv/ConvTranspose/Gemm followed by BatchNormalization → one node with rescaled weights and bias.

Reused as is from onnxscript (``onnxscript.rewriter.rules.common``): its check already refuses
parameters that are graph inputs or shared with nodes outside the match, which is what we need.
"""

from __future__ import annotations

from onnxscript.rewriter.rules import common as onnxscript_rules

NAME = "conv-batchnorm"
MIN_OPSET = 9
TRIGGER_OPS = frozenset({"BatchNormalization"})
RULES = [
    onnxscript_rules.fuse_batchnorm_into_conv_rule,
    onnxscript_rules.fuse_batchnorm_into_conv_transpose_rule,
    onnxscript_rules.fuse_batchnorm_into_gemm_rule,
]
