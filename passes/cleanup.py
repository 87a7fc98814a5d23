"""``cleanup``: remove what does not contribute to the outputs, without touching the signature.

Composed from ``onnx_ir.passes.common`` (common subexpressions, duplicate initializers by content
hash, which needs each held contiguous, dead nodes, unused functions and opsets). Three steps are ours: identity elimination, because
onnx_ir's renames ``x`` to ``y`` in ``y = Identity(x)`` even when both are outputs of a subgraph,
leaving a Scan body with two outputs of one name (3 of the 1,497 node-corpus cases ORT runs broke);
removing initializer-backed graph inputs nothing reads, the optional inputs of IR < 4 models; and removing
subgraph initializers nothing reads (onnx_ir clears the main graph's only; ORT warns once per such initializer).
"""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common

from onnxcompress import walk
from onnxcompress.passes.base import CompressionPass
from onnxcompress.passes.initializers import drop_unused_in_subgraphs, store_contiguous
from onnxcompress.quiet import quiet


class Cleanup(CompressionPass):
    """Remove dead nodes, identities, duplicate initializers, common subexpressions and unused opsets."""

    name = "cleanup"
    exact = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Run the composed clean-up and record how many nodes, initializers and inputs went."""
        before = _census(model)
        _bypass_identities(model.graph)
        store_contiguous(model.graph)
        with quiet(common.initializer_deduplication.__name__):
            self._run_common_passes(model)
        _drop_unused_initializer_inputs(model.graph)
        drop_unused_in_subgraphs(model.graph)
        removed = {key: before[key] - after for key, after in _census(model).items()}
        self.context.details.update({f"{key}_removed": count for key, count in removed.items()})
        self.note(", ".join(f"removed {count} {key}" for key, count in removed.items()))
        return ir.passes.PassResult(model, modified=any(removed.values()))

    @staticmethod
    def _run_common_passes(model: ir.Model) -> None:
        ir.passes.Sequential(
            common.CommonSubexpressionEliminationPass(),
            common.DeduplicateHashedInitializersPass(),
            common.RemoveUnusedNodesPass(),
            common.RemoveUnusedFunctionsPass(),
            common.RemoveUnusedOpsetsPass(),
        )(model)


def _bypass_identities(graph: ir.Graph) -> None:
    """Point readers of ``y = Identity(x)`` at ``x`` (in subgraphs too); identities that produce a
    graph output stay, so no output is renamed or duplicated."""
    for node in list(walk.nodes(graph)):
        if node.op_type != "Identity" or node.domain not in ("", "ai.onnx") or node.inputs[0] is None:
            continue
        output = node.outputs[0]
        if output.is_graph_output():
            continue
        output.replace_all_uses_with(node.inputs[0])
        node.graph.remove(node, safe=True)


def _drop_unused_initializer_inputs(graph: ir.Graph) -> None:
    """Remove graph inputs that only exist to expose an initializer nothing reads, and their initializers."""
    unused = [v for v in graph.inputs if v.is_initializer() and not v.uses() and not v.is_graph_output()]
    for value in unused:
        graph.inputs.remove(value)
        del graph.initializers[value.name]


def _census(model: ir.Model) -> dict[str, int]:
    graph = model.graph
    return {
        "nodes": sum(1 for _ in walk.nodes(graph)),
        "initializers": len(graph.initializers),
        "inputs": len(graph.inputs),
    }
