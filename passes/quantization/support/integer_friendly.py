"""Exact rewrites of ops ORT's QDQ quantizer has no rule for into ones it has, so they run in int8.

On the onnx wheel's ResNet-50 and ShuffleNet (Caffe2 exports) ``quantize-static`` left 44 and 48
layers in FP32 between Q/DQ: every BatchNormalization after a Conv, and the residual ``Sum`` of two
tensors. A BatchNormalization after a Conv is folded into the Conv (onnxscript's rule, as ``fuse``
does; ORT folds it too, but only in FP32 graphs, not across the Q/DQ a quantizer puts between them);
a two-input ``Sum`` is an ``Add`` (same multidirectional broadcasting), which ORT runs as QLinearAdd.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress.passes.fusion import conv_bn
from onnxcompress.passes.fusion.fuse import apply_family


def fold_batch_norms(model: ir.Model) -> int:
    """Fold (in place) BatchNormalization into the Conv/ConvTranspose/Gemm before it, which keeps its name; the number folded."""
    if not any(node.op_type == "BatchNormalization" for node in model.graph):
        return 0
    return apply_family(conv_bn, model)


def sums_as_adds(model: ir.Model) -> int:
    """Turn (in place) every two-input ``Sum`` of the main graph into ``Add``; the number turned."""
    turned = 0
    for node in model.graph:
        if node.op_type == "Sum" and node.domain in ("", "ai.onnx") and len(node.inputs) == 2:
            node.op_type = "Add"
            turned += 1
    return turned
