"""Give each consumer of a shared weight its own copy before channel analysis.

Exporters share identical tensors (TorchScript routes equal BatchNorm-folded biases through
``Identity`` nodes to every Conv that has them). A shared tensor would couple the channels of every
layer using it into one group — wrong grouping, the classic Torch-Pruning complaint — so every use
gets a private initializer first; copies the removal left equal to their source are tied back
afterwards (``retie_unchanged``), so untying never adds parameters by itself.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxcompress.passes.pruning.rules.constants import fresh_name


def _shared_source(value: ir.Value | None) -> ir.Value | None:
    """The floating-point initializer behind ``value`` (through Identity nodes), if any."""
    while value is not None and value.const_value is None:
        producer = value.producer()
        if producer is None or producer.op_type != "Identity":
            return None
        value = producer.inputs[0]
    if value is None or value.is_graph_input() or not value.const_value.dtype.is_floating_point():
        return None
    return value if value.shape is not None and len(value.shape) else None


Tie = tuple[ir.Value, ir.Value]


def untie_weights(model: ir.Model) -> list[Tie]:
    """Give every use of a shared (or Identity-forwarded) weight its own initializer; return (copy, source) pairs."""
    graph = model.graph
    copies: list[Tie] = []
    seen: set[int] = set()
    for node in list(graph):
        for index, value in enumerate(node.inputs):
            source = _shared_source(value)
            if source is None:
                continue
            if value is source and id(source) not in seen:
                seen.add(id(source))
                continue
            name = fresh_name(node, f"untied{index}")
            copy = ir.Value(name=name, shape=source.shape, type=source.type, const_value=ir.tensor(source.const_value.numpy(), name=name))
            graph.register_initializer(copy)
            node.replace_input_with(index, copy)
            copies.append((copy, source))
    if copies:
        RemoveUnusedNodesPass()(model)
    return copies


def retie_unchanged(model: ir.Model, ties: list[Tie]) -> int:
    """Tie copies of one source that are still equal (to the source or to each other) back into one; return how many.

    A source whose every use was forwarded through ``Identity`` is gone after untying, so an equal
    earlier copy stands in for it.
    """
    graph = model.graph
    kept: dict[int, list[ir.Value]] = {}
    tied = 0
    for copy, source in ties:
        candidates = kept.setdefault(id(source), [source] if _registered(graph, source) else [])
        if not _registered(graph, copy):
            continue
        twin = next((c for c in candidates if _same_tensor(copy, c)), None)
        if twin is None:
            candidates.append(copy)
            continue
        copy.replace_all_uses_with(twin)
        del graph.initializers[copy.name]
        tied += 1
    if tied:
        RemoveUnusedNodesPass()(model)
    return tied


def _registered(graph: ir.Graph, value: ir.Value) -> bool:
    return graph.initializers.get(value.name) is value


def _same_tensor(a: ir.Value, b: ir.Value) -> bool:
    x, y = a.const_value.numpy(), b.const_value.numpy()
    return x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
