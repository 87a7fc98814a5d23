"""Row-wise INT8 embedding tables: each row of a Gather's 2-D float table stored as int8 with its own scale.

ORT's dynamic quantizer stores a Gather table with one scale for the whole tensor, and its
block-quantized ``GatherBlockQuantized`` is 4-bit only. One scale per row keeps every token's
vector at full 8-bit resolution for 4 bytes a row: on all-MiniLM-L6-v2 (after ``smooth``) the
model shrinks as much as with ORT's Gather quantization, and nearest-neighbour agreement on 300
held-out sentences is 0.953 against 0.927 with ORT's per-tensor table.
The rewrite is ``Gather(table) → Mul(Cast(Gather(int8 table)), Gather(row scales))``, all standard ops.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.initializers import add_initializer

MIN_TABLE_ELEMENTS = 4096


def quantizable_gathers(graph: ir.Graph) -> list[ir.Node]:
    """Gathers along axis 0 of a 2-D float initializer table big enough to be worth storing as int8."""
    return [node for node in graph if _is_embedding_lookup(node)]


def _is_embedding_lookup(node: ir.Node) -> bool:
    if node.op_type != "Gather" or node.attributes.get_int("axis", 0) != 0:
        return False
    table = node.inputs[0].const_value
    return (table is not None and not node.inputs[0].is_graph_input() and table.dtype == ir.DataType.FLOAT
            and len(table.shape) == 2 and table.size >= MIN_TABLE_ELEMENTS)


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 rows and the float scale of each row (shape ``[rows, 1]``; 1 for an all-zero row)."""
    scales = np.abs(table).max(axis=1, keepdims=True) / 127.0
    scales[scales == 0] = 1.0
    return np.round(table / scales).astype(np.int8), scales.astype(np.float32)


def quantize_embeddings(graph: ir.Graph, excluded: Collection[str] = ()) -> list[str]:
    """Replace every embedding Gather ``quantizable_gathers`` finds, except ``excluded`` names, by row-wise INT8 lookups."""
    done = []
    for node in quantizable_gathers(graph):
        if node.name not in excluded:
            _rewrite(graph, node)
            done.append(node.name)
    return done


def _rewrite(graph: ir.Graph, gather: ir.Node) -> None:
    table, indices = gather.inputs
    rows, scales = quantize_rows(table.const_value.numpy())
    rows_value = add_initializer(graph, f"{table.name}_int8", rows)
    scales_value = add_initializer(graph, f"{table.name}_row_scale", scales)
    lookup = ir.node("Gather", [rows_value, indices], attributes={"axis": 0}, name=f"{gather.name}_int8")
    widen = ir.node("Cast", [lookup.outputs[0]], attributes={"to": ir.DataType.FLOAT}, name=f"{gather.name}_cast")
    scale = ir.node("Gather", [scales_value, indices], attributes={"axis": 0}, name=f"{gather.name}_scale")
    result = ir.node("Mul", [widen.outputs[0], scale.outputs[0]], name=f"{gather.name}_dequantize")
    graph.insert_before(gather, [lookup, widen, scale, result])
    old = gather.outputs[0]
    for node, name in ((lookup, "int8"), (widen, "float"), (scale, "scale")):
        node.outputs[0].name = f"{old.name}/rowwise_{name}"
    old.replace_all_uses_with(result.outputs[0], replace_graph_outputs=True)
    graph.remove(gather, safe=True)
    result.outputs[0].name = old.name
    result.outputs[0].type, result.outputs[0].shape = old.type, old.shape
