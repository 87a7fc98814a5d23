"""``cleanup``: remove what does not contribute to the outputs, without touching the signature.

Composed from ``onnx_ir.passes.common`` (identity elimination, common subexpressions, duplicate
initializers by content hash, dead nodes, unused functions and opsets). The one step of our own
removes initializer-backed graph inputs nothing reads: they are optional inputs of IR < 4 models,
and keeping them is what makes a cleaned IR-3 model still list hundreds of inputs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import onnx_ir as ir
import onnx_ir.passes.common as common

from onnxcompress.passes.base import CompressionPass


class Cleanup(CompressionPass):
    """Remove dead nodes, identities, duplicate initializers, common subexpressions and unused opsets."""

    name = "cleanup"
    exact = True

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Run the composed clean-up and record how many nodes, initializers and inputs went."""
        before = _census(model)
        with _quiet(common.initializer_deduplication.__name__):
            self._run_common_passes(model)
        _drop_unused_initializer_inputs(model.graph)
        common.RemoveUnusedNodesPass()(model)
        removed = {key: before[key] - after for key, after in _census(model).items()}
        self.details.update({f"{key}_removed": count for key, count in removed.items()})
        self.note(", ".join(f"removed {count} {key}" for key, count in removed.items()))
        return ir.passes.PassResult(model, modified=any(removed.values()))

    @staticmethod
    def _run_common_passes(model: ir.Model) -> None:
        ir.passes.Sequential(
            common.IdentityEliminationPass(),
            common.CommonSubexpressionEliminationPass(),
            common.DeduplicateHashedInitializersPass(),
            common.RemoveUnusedNodesPass(),
            common.RemoveUnusedFunctionsPass(),
            common.RemoveUnusedOpsetsPass(),
        )(model)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a dependency's per-initializer warnings (one line per IR-3 input) while it runs."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _drop_unused_initializer_inputs(graph: ir.Graph) -> None:
    """Remove graph inputs that only exist to expose an initializer nothing reads."""
    unused = [v for v in graph.inputs if v.is_initializer() and not v.uses() and not v.is_graph_output()]
    for value in unused:
        graph.inputs.remove(value)


def _census(model: ir.Model) -> dict[str, int]:
    graph = model.graph
    return {
        "nodes": sum(1 for _ in graph.all_nodes()),
        "initializers": len(graph.initializers),
        "inputs": len(graph.inputs),
    }
