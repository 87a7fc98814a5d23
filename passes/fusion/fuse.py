"""``fuse``: rewrite multi-op patterns into single standard ONNX ops, family by family.

Each family (one module: ``NAME``, ``MIN_OPSET``, ``TRIGGER_OPS``, ``RULES`` in onnxscript's
pattern/check/rewrite idiom) runs only where the model's opset has its target op and the graph has
one of its trigger ops. We apply our chosen rules rather than onnxscript's default rule set, which
spends most of its time on rules we do not need (``SlicesSplit`` took ~71 % of the time on a
5k-node model); building a commuted rule set costs more than applying it to a small graph, so each
family's set is built once per process. Ops no rule knows are left alone. A fused node keeps the
name of the first node it replaced and records all their names (``passes/names.py``), so ``exclude``
patterns written for the exported model still match. ``opset`` converts an older export up first so
the newer fused ops are available: on all-MiniLM-L6-v2 (opset 17), ``fuse:opset=23`` fuses the six
attention blocks into ``Attention`` ops (``attention.py``; latency in ``docs/benchmarks/bench_quantization.md``).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Annotated

import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter import pattern

from onnxcompress import io, walk
from onnxcompress.errors import UsageError
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.fusion import attention, bias_add, conv_bn, conv_scale, gelu, layer_norm, reshape_dims, unsqueeze_chain
from onnxcompress.passes.initializers import drop_unused_in_subgraphs
from onnxcompress.passes.names import apply_keeping_names
from onnxcompress.passes.shapes import infer_shapes

# attention after reshape-dims: it needs the head-split Reshapes' shapes as constants; conv-scale before bias-add, which
# takes the Add it leaves after the Conv
FAMILIES = (conv_bn, conv_scale, bias_add, layer_norm, gelu, reshape_dims, unsqueeze_chain, attention)


class Fuse(CompressionPass):
    """Fuse Conv+BatchNorm, per-channel scales and bias Adds after Conv, MatMul+Add→Gemm, LayerNorm, GELU, attention, Reshape shape and Unsqueeze chains."""

    name = "fuse"
    exact = True

    def __init__(
        self,
        opset: Annotated[int | None, "convert the model up to this opset first (onnx's version converter) so newer fused ops apply "
                                     "(Gelu needs 20, Attention 23); none, or a model already there, keeps its opset"] = None,
    ) -> None:
        super().__init__()
        newest = onnx.defs.onnx_opset_version()
        if opset is not None and not 1 <= opset <= newest:
            raise UsageError(f"fuse: opset {opset} is out of range (this onnx knows opsets 1-{newest})")
        self.opset = opset

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Convert the opset if asked, infer shapes (the checks need them), then apply each family the opset and graph allow."""
        converted = self._convert_opset(model)
        families = self._applicable(model)
        if families:
            infer_shapes(model, None if converted else self.context.serialized)
        total = 0
        for family in families:
            count = apply_family(family, model)
            self.context.details[family.NAME] = count
            self.note(f"{family.NAME}: {count} fused")
            total += count
        if total:  # else nothing died: a whole-graph sweep on every model costs 10 s a million nodes
            common.CommonSubexpressionEliminationPass()(model)  # rewrites can leave twin shape chains
            model.graph.sort()  # onnxscript inserts a rewrite after the node it matched at, before any later input it reads
            common.RemoveUnusedNodesPass()(model)
            drop_unused_in_subgraphs(model.graph)
        return ir.passes.PassResult(model, modified=converted or total > 0)

    def _convert_opset(self, model: ir.Model) -> bool:
        """Raise the model to ``self.opset`` when it is below; True when it was converted."""
        before = io.default_opset(model)
        if self.opset is None or not io.raise_opset(model, self.opset, "fuse:opset"):
            return False
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)  # axes inputs the converter wrote
        self.note(f"opset {before} converted to {self.opset}")
        self.context.details["opset"] = {"from": before, "to": self.opset}
        return True

    def _applicable(self, model: ir.Model) -> list[ModuleType]:
        """The families whose target op the opset has and whose trigger ops the graph contains."""
        opset = io.default_opset(model)
        present = {node.op_type for node in walk.nodes(model.graph) if node.domain in ("", "ai.onnx")}
        chosen = []
        for family in FAMILIES:
            if not family.TRIGGER_OPS & present:
                self.context.details[family.NAME] = 0
            elif opset < family.MIN_OPSET:
                self.note(f"{family.NAME}: not tried, needs opset >= {family.MIN_OPSET} "
                          f"(model has {opset}; fuse:opset={family.MIN_OPSET} converts it)")
            else:
                chosen.append(family)
        return chosen


def apply_family(family: ModuleType, model: ir.Model) -> int:
    """Apply one family's rules to ``model`` (in place), the replaced nodes' names kept (``names.py``); the number fused."""
    return apply_keeping_names(rule_set(family), model)


@functools.cache
def rule_set(family: ModuleType) -> pattern.RewriteRuleSet:
    """The family's rules with commuted operand orders, built once."""
    return pattern.RewriteRuleSet(family.RULES, commute=True)
