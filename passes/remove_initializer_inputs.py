"""``remove-initializer-inputs``: weights listed as graph inputs become plain constants.

Models of IR < 4 and ``torch.onnx.export(..., keep_initializers_as_inputs=True)`` list every initializer as
a graph input too, which makes each weight a default the caller may override at run time. ONNX Runtime
then neither folds nor pre-packs them, and the graph passes (pruning, fusion, folding) must leave them
alone, since a caller could feed other values. Dropping them from the inputs makes them constants: the
outputs stay the same for every call that does not feed them, which is how such models are run.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.initializers import allow_plain_initializers


def initializer_inputs(graph: ir.Graph) -> list[ir.Value]:
    """Graph inputs that are also initializers (weights a caller could override)."""
    return [value for value in graph.inputs if value.is_initializer()]


class RemoveInitializerInputs(CompressionPass):
    """Turn initializers listed as graph inputs into constants, so they can be folded, fused, pruned and pre-packed."""

    name = "remove-initializer-inputs"
    exact = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Drop every initializer-backed graph input, raising IR < 4 to 4 (which lets initializers be non-inputs)."""
        exposed = initializer_inputs(model.graph)
        if not exposed:
            self.note("no initializer is listed as a graph input")
            return ir.passes.PassResult(model, modified=False)
        for value in exposed:
            model.graph.inputs.remove(value)
        old = model.ir_version
        raised = f"; IR version {old} -> 4, the first that allows it" if allow_plain_initializers(model) else ""
        self.context.details["inputs_removed"] = [value.name for value in exposed]
        self.note(f"{len(exposed)} initializers are constants now, no longer graph inputs (e.g. {exposed[0].name!r}){raised}")
        return ir.passes.PassResult(model, modified=True)
