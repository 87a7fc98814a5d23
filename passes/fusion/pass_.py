"""``fuse``: rewrite multi-op patterns into single standard ONNX ops, family by family.

Each family (one module: ``NAME``, ``MIN_OPSET``, ``RULES`` in onnxscript's pattern/check/rewrite
idiom) runs only where the model's opset has its target op. We apply our chosen rules rather than
onnxscript's default rule set, which spends most of its time on rules we do not need (``SlicesSplit``
took ~71 % of the time on a 5k-node model). Ops no rule knows are left alone.
"""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter import pattern

from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.fusion import bias_add, conv_bn, gelu, layer_norm, reshape_dims

FAMILIES = (conv_bn, bias_add, layer_norm, gelu, reshape_dims)


class Fuse(CompressionPass):
    """Fuse Conv+BatchNorm, bias Adds, MatMul+Add→Gemm, LayerNorm and GELU into standard ONNX ops."""

    name = "fuse"
    exact = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Infer shapes (the checks need them), then apply each family the opset allows."""
        common.ShapeInferencePass(strict_mode=False)(model)
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
        total = 0
        for family in FAMILIES:
            if opset < family.MIN_OPSET:
                self.note(f"{family.NAME}: not tried, needs opset >= {family.MIN_OPSET} (model has {opset})")
                continue
            count = pattern.RewriteRuleSet(family.RULES, commute=True).apply_to_model(model)
            self.details[family.NAME] = count
            self.note(f"{family.NAME}: {count} fused")
            total += count
        common.RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, modified=total > 0)

