"""Adding a constant to a graph: one helper for every pass that writes new weights, scales or tables,
dropping and storing them, and the IR version that lets initializers be plain constants rather than graph inputs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress import walk

FIRST_IR_WITH_PLAIN_INITIALIZERS = 4


def add_initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` (dtype kept) as a new initializer named ``name``, or ``name_1``, ``name_2``… if taken."""
    unique, suffix = name, 1
    while unique in graph.initializers:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    tensor = ir.tensor(np.ascontiguousarray(array), name=unique)
    value = ir.Value(name=unique, shape=tensor.shape, type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


def drop_if_unused(graph: ir.Graph, value: ir.Value | None) -> bool:
    """Remove ``value`` from the graph's initializers once nothing reads it (a rewrite replaced it) and it is neither
    a graph input nor an output (an ``If`` branch may return a constant as it is); whether it went."""
    if value is None or value.uses() or value.is_graph_input() or value.is_graph_output() or value.name not in graph.initializers:
        return False
    del graph.initializers[value.name]
    return True


def drop_unused_in_subgraphs(graph: ir.Graph) -> int:
    """Remove the initializers of ``graph``'s subgraphs that nothing reads and return how many went: a rewrite inside
    an ``If`` branch leaves the constants it replaced there (onnx_ir's ``RemoveUnusedNodesPass`` clears the main
    graph's only), and ONNX Runtime warns once per such initializer when it loads the model."""
    return sum(drop_if_unused(subgraph, value) for subgraph in walk.graphs(graph)[1:] for value in list(subgraph.initializers.values()))


def store_contiguous(graph: ir.Graph) -> int:
    """Hold every initializer of ``graph`` and its subgraphs that is a strided numpy view (a ``Transpose`` the constant
    folder evaluated) as a contiguous copy, and return how many were: onnx_ir's deduplication hashes the array as it
    is held and fails on a view ("ndarray is not C-contiguous")."""
    views = [value for g in walk.graphs(graph) for value in g.initializers.values()
             if isinstance(getattr(value.const_value, "raw", None), np.ndarray) and not value.const_value.raw.flags.c_contiguous]
    for value in views:
        value.const_value = ir.tensor(np.ascontiguousarray(value.const_value.raw), name=value.const_value.name)
    return len(views)


def allow_plain_initializers(model: ir.Model) -> bool:
    """Raise IR < 4 to 4 when some initializer is not a graph input (IR < 4 requires every one to be);
    True when it was raised."""
    inputs = set(model.graph.inputs)
    plain = any(value not in inputs for value in model.graph.initializers.values())
    if model.ir_version < FIRST_IR_WITH_PLAIN_INITIALIZERS and plain:
        model.ir_version = FIRST_IR_WITH_PLAIN_INITIALIZERS
        return True
    return False
