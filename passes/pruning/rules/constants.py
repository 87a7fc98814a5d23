"""Reading and replacing the small constant tensors that rules look at (axes, pads, shapes)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def replace_input_with_constant(node: ir.Node, index: int, array: np.ndarray, name: str) -> None:
    """Point input ``index`` of ``node`` at a new initializer (never mutate a shared constant)."""
    graph = node.graph
    tensor = ir.tensor(array, name=name)
    new = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(new)
    node.replace_input_with(index, new)


def fresh_name(node: ir.Node, stem: str) -> str:
    """A tensor name derived from ``node`` that is not used in its graph yet."""
    graph = node.graph
    taken = set(graph.initializers) | {v.name for n in graph for v in n.outputs} | {v.name for v in graph.inputs}
    base = f"{node.name or node.op_type}_{stem}"
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name
