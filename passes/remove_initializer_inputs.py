"""``remove-initializer-inputs``: weights listed as graph inputs become plain constants.

Models of IR < 4 and ``torch.onnx.export(..., keep_initializers_as_inputs=True)`` list every initializer as
a graph input too, which makes each weight a default the caller may override at run time. ONNX Runtime
then neither folds nor pre-packs them, and the graph passes (pruning, fusion, folding) must leave them
alone, since a caller could feed other values. Dropping them from the inputs makes them constants: the
outputs stay the same for every call that does not feed them, which is how such models are run. A default
a caller is meant to override (a threshold, say) is kept as an input with ``exclude``.
"""

from __future__ import annotations

from typing import Annotated

import onnx_ir as ir

from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.exclude import Candidate, noted, resolve, shortened
from onnxcompress.passes.initializers import allow_plain_initializers


def initializer_inputs(graph: ir.Graph) -> list[ir.Value]:
    """Graph inputs that are also initializers (weights a caller could override)."""
    return [value for value in graph.inputs if value.is_initializer()]


def weights_as_inputs(exposed: list[ir.Value]) -> str:
    """``N weights are also graph inputs (...)`` for ``initializer_inputs``' list: how a pass, ``run`` and
    ``recommend`` open their word on them."""
    return f"{len(exposed)} weights are also graph inputs (IR < 4, or exported with keep_initializers_as_inputs=True)"


class RemoveInitializerInputs(CompressionPass):
    """Turn initializers listed as graph inputs into constants, so they can be folded, fused, pruned and pre-packed."""

    name = "remove-initializer-inputs"
    exact = True

    def __init__(
        self,
        *,
        exclude: Annotated[list[str] | None, "glob patterns (a|b) of initializer-backed inputs a caller is meant to feed, "
                                              "kept as inputs; a pattern matching none of them is an error"] = None,
    ) -> None:
        super().__init__()
        self.exclude = list(exclude or [])

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Drop every initializer-backed graph input not excluded, raising IR < 4 to 4 (which lets initializers be non-inputs)."""
        candidates = [Candidate(v.name, (v.name,), "initializer", True) for v in initializer_inputs(model.graph)]
        listing = f"the initializer-backed inputs are {shortened([c.key for c in candidates]) or 'none'}"
        kept = set(noted(self, resolve(self.name, self.exclude, candidates, listing), "input"))
        exposed = [v for v in initializer_inputs(model.graph) if v.name not in kept]
        if not exposed:
            self.note("every initializer-backed input is excluded" if kept else "no initializer is listed as a graph input")
            return ir.passes.PassResult(model, modified=False)
        for value in exposed:
            model.graph.inputs.remove(value)
        old = model.ir_version
        raised = f"; IR version {old} -> 4, the first that allows it" if allow_plain_initializers(model) else ""
        self.context.details["inputs_removed"] = [value.name for value in exposed]
        self.note(f"{len(exposed)} initializers are constants now, no longer graph inputs (e.g. {exposed[0].name!r}){raised}")
        return ir.passes.PassResult(model, modified=True)
