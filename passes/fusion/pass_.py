"""``fuse``: rewrite multi-op patterns into single standard ONNX ops, family by family.

Each family (one module: ``NAME``, ``MIN_OPSET``, ``TRIGGER_OPS``, ``RULES`` in onnxscript's
pattern/check/rewrite idiom) runs only where the model's opset has its target op and the graph has
one of its trigger ops. We apply our chosen rules rather than onnxscript's default rule set, which
spends most of its time on rules we do not need (``SlicesSplit`` took ~71 % of the time on a
5k-node model); building a commuted rule set costs more than applying it to a small graph, so each
family's set is built once per process. Ops no rule knows are left alone.
"""

from __future__ import annotations

import functools
from types import ModuleType

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter import pattern

from onnxcompress import io
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.fusion import bias_add, conv_bn, gelu, layer_norm, reshape_dims, unsqueeze_chain

FAMILIES = (conv_bn, bias_add, layer_norm, gelu, reshape_dims, unsqueeze_chain)


class Fuse(CompressionPass):
    """Fuse Conv+BatchNorm, bias Adds, MatMul+Add→Gemm, LayerNorm, GELU, Reshape shape and Unsqueeze chains."""

    name = "fuse"
    exact = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Infer shapes (the checks need them), then apply each family the opset and graph allow."""
        families = self._applicable(model)
        if families:
            common.ShapeInferencePass(strict_mode=False)(model)
        total = 0
        for family in families:
            count = rule_set(family).apply_to_model(model)
            self.details[family.NAME] = count
            self.note(f"{family.NAME}: {count} fused")
            total += count
        if total:
            common.CommonSubexpressionEliminationPass()(model)  # rewrites can leave twin shape chains
        common.RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, modified=total > 0)

    def _applicable(self, model: ir.Model) -> list[ModuleType]:
        """The families whose target op the opset has and whose trigger ops the graph contains."""
        opset = io.default_opset(model)
        present = {node.op_type for node in model.graph.all_nodes() if node.domain in ("", "ai.onnx")}
        chosen = []
        for family in FAMILIES:
            if opset < family.MIN_OPSET:
                self.note(f"{family.NAME}: not tried, needs opset >= {family.MIN_OPSET} (model has {opset})")
            elif family.TRIGGER_OPS & present:
                chosen.append(family)
            else:
                self.details[family.NAME] = 0
        return chosen


@functools.cache
def rule_set(family: ModuleType) -> pattern.RewriteRuleSet:
    """The family's rules with commuted operand orders, built once."""
    return pattern.RewriteRuleSet(family.RULES, commute=True)
