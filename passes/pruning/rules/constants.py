"""Reading and replacing the small constant tensors that rules look at (axes, pads, shapes)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.names import unused_name
from onnxcompress.passes.values import constant


def replace_input_with_constant(node: ir.Node, index: int, array: np.ndarray, name: str) -> None:
    """Point input ``index`` of ``node`` at a new initializer (never mutate a shared constant)."""
    node.replace_input_with(index, new_initializer(node.graph, array, name))


def new_initializer(graph: ir.Graph, array: np.ndarray, name: str) -> ir.Value:
    """A new initializer of ``graph`` holding ``array``."""
    tensor = ir.tensor(array, name=name)
    new = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(new)
    return new


def fresh_name(node: ir.Node, stem: str) -> str:
    """A tensor name derived from ``node`` that is not used in its graph yet."""
    return unused_name(node.graph, f"{node.name or node.op_type}_{stem}")


def set_entries(node: ir.Node, index: int, entries: dict[int, int]) -> None:
    """Give the 1-D int64 input ``index`` of ``node`` (a target shape) ``entries`` {position: value}: a new constant
    when it is one; when it is computed at run time (from ``Shape``), a ``Where`` that puts the constants in."""
    known = constant(node.inputs[index])
    if known is not None:
        array = known.copy()
        for position, entry in entries.items():
            array.reshape(-1)[position] = entry
        replace_input_with_constant(node, index, array, fresh_name(node, f"pruned_shape{index}"))
        return
    computed = node.inputs[index]
    mask, values = np.zeros(computed.shape[0], dtype=bool), np.zeros(computed.shape[0], dtype=np.int64)
    for position, entry in entries.items():
        mask[position], values[position] = True, entry
    where = ir.node("Where", [new_initializer(node.graph, mask, fresh_name(node, "pruned_mask")),
                              new_initializer(node.graph, values, fresh_name(node, "pruned_entries")), computed],
                    name=fresh_name(node, "pruned_where"))
    where.outputs[0].name, where.outputs[0].shape, where.outputs[0].type = where.name, computed.shape, computed.type
    node.graph.insert_before(node, where)
    node.replace_input_with(index, where.outputs[0])
