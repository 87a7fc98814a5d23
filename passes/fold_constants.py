"""``fold-constants``: evaluate what is already known at export time, within a size budget.

Built on onnxscript's constant folder (``onnxscript.optimizer.fold_constants``), which already
folds constant subgraphs and static shape arithmetic (Shape→Gather→Concat… when shapes are
static). What we add is a byte budget on every folded tensor (``max_folded_mb``): onnxscript never
folds ``ConstantOfShape`` and onnxslim always does, and on ``onnx/backend/test/data/light`` the
latter turns a 9 KB VGG-19 into 548 MiB; we fold a ``ConstantOfShape`` only when its output fits the
budget. Initializers that are also graph inputs are overridable, so nothing that reads one is
folded (the folder refuses graph inputs).
"""

from __future__ import annotations

import math
from typing import Annotated

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript import optimizer

from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.initializers import allow_plain_initializers

MB = 2**20
FLOAT32_BYTES = 4
FOLDER_FAILURE = "Error during constant folding"


class FoldConstants(CompressionPass):
    """Fold constant subgraphs, static shape arithmetic and small ConstantOfShape into initializers."""

    name = "fold-constants"
    exact = True

    def __init__(
        self,
        max_folded_mb: Annotated[float, "largest tensor, in MiB, one folded constant may hold; a bigger result stays computed at run time"] = 1.0,
        shape_inference: Annotated[bool, "run ONNX shape inference while folding, so shape arithmetic on static dims folds too"] = True,
    ) -> None:
        super().__init__()
        self.max_folded_mb = max_folded_mb
        self.shape_inference = shape_inference
        self.require(math.isfinite(max_folded_mb) and max_folded_mb >= 0, "max_folded_mb", "a finite number >= 0")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold, then turn the remaining ``Constant`` nodes into initializers."""
        nodes_before = _count_nodes(model)
        self._fold(model)
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        common.RemoveUnusedNodesPass()(model)
        self._allow_plain_initializers(model)
        removed = nodes_before - _count_nodes(model)
        self.context.details["nodes_folded"] = removed
        self.note(f"folded {removed} nodes into constants (budget {self.max_folded_mb:g} MB per tensor)")
        return ir.passes.PassResult(model, modified=removed > 0)

    def _fold(self, model: ir.Model) -> None:
        """Run onnxscript's folder; if one of its op evaluators crashes, keep what it folded so far.

        The folder replaces one node at a time, so the graph it leaves behind is valid and exact.
        """
        try:
            optimizer.fold_constants(
                model,
                onnx_shape_inference=self.shape_inference,
                output_size_limit=int(self._budget_bytes() // FLOAT32_BYTES),
                should_fold=self._should_fold,
            )
        except RuntimeError as exc:
            if not str(exc).startswith(FOLDER_FAILURE):
                raise
            self.note(f"folding stopped early: {exc} ({exc.__cause__!r})")

    def _budget_bytes(self) -> float:
        return self.max_folded_mb * MB

    def _should_fold(self, node: ir.Node) -> bool | None:
        """Fold ``ConstantOfShape`` only within the byte budget; other ops follow onnxscript's rules."""
        if node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx"):
            return None
        shape = node.inputs[0].const_value if node.inputs and node.inputs[0] is not None else None
        if shape is None:
            return False
        return math.prod(int(d) for d in shape.numpy().ravel()) * _fill_itemsize(node) <= self._budget_bytes()

    def _allow_plain_initializers(self, model: ir.Model) -> None:
        """New folded constants are not graph inputs, which IR < 4 requires: raise the IR to 4."""
        old = model.ir_version
        if allow_plain_initializers(model):
            self.note(f"raised IR version {old} -> 4 so folded constants need not be inputs")


def _fill_itemsize(node: ir.Node) -> int:
    """Bytes per element of a ConstantOfShape's output (float32 when ``value`` is absent)."""
    value = node.attributes.get("value")
    return value.as_tensor().dtype.itemsize if value is not None else FLOAT32_BYTES


def _count_nodes(model: ir.Model) -> int:
    return sum(1 for _ in model.graph.all_nodes())
