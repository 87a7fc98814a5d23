"""Shapes of table lookups taken without the lookup: ``Shape(Gather(table, ids))`` becomes the indices' shape joined
to the table's row shape, so the table keeps only the readers of its values.

Exports take a sequence length from an embedding's output (``embeddings.size(1)``); after ONNX Runtime's transformer
optimizer fuses the embedding into ``EmbedLayerNormalization``, that ``Gather`` is read by ``Shape`` alone. Untying
then gave it its own copy of the table, pruning narrowed the copy (nothing reads its values) and the model grew by a
whole table, so the removal was declined and no head or neuron went. The rewrite is exact: the shape is the same.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.initializers import add_initializer
from onnxcompress.passes.names import unused_name

DEFAULT_DOMAINS = ("", "ai.onnx")


def shapes_without_lookups(model: ir.Model) -> int:
    """Rewrite every whole ``Shape`` of a row lookup (``Gather`` on axis 0 of a stored table) in the main graph; drop
    lookups nothing else reads. How many shapes were rewritten."""
    graph = model.graph
    rewritten = 0
    for node in list(graph):
        lookup = _lookup_behind(node)
        if lookup is None:
            continue
        table, ids = lookup.inputs[0], lookup.inputs[1]
        stem = node.name or "shape"
        ids_shape = ir.node("Shape", [ids], name=unused_name(graph, f"{stem}_of_indices"))
        rows = add_initializer(graph, f"{table.name}_row_shape", np.array(table.const_value.shape[1:], dtype=np.int64))
        joined = ir.node("Concat", [ids_shape.outputs[0], rows], attributes={"axis": 0}, name=unused_name(graph, f"{stem}_joined"))
        joined.outputs[0].type = ir.TensorType(ir.DataType.INT64)
        graph.insert_before(node, [ids_shape, joined])
        node.outputs[0].replace_all_uses_with(joined.outputs[0])
        graph.remove(node, safe=True)
        if not lookup.outputs[0].uses() and not lookup.outputs[0].is_graph_output():
            graph.remove(lookup, safe=True)
        rewritten += 1
    return rewritten


def _lookup_behind(node: ir.Node) -> ir.Node | None:
    """The row lookup whose whole shape ``node`` takes, when it is a ``Shape`` without ``start``/``end`` of one."""
    if node.op_type != "Shape" or node.domain not in DEFAULT_DOMAINS or node.outputs[0].is_graph_output():
        return None
    if "end" in node.attributes or node.attributes.get_int("start", 0) != 0:
        return None
    lookup = node.inputs[0].producer() if node.inputs[0] is not None else None
    if lookup is None or lookup.op_type != "Gather" or lookup.domain not in DEFAULT_DOMAINS:
        return None
    table = lookup.inputs[0]
    if table is None or table.const_value is None or table.is_graph_input() or lookup.attributes.get_int("axis", 0) != 0:
        return None
    return lookup
