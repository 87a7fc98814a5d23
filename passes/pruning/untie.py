"""Give each consumer of a shared weight its own copy before channel analysis.

Exporters share identical tensors (TorchScript routes equal BatchNorm-folded biases through
``Identity`` nodes to every Conv that has them). A shared tensor would couple the channels of every
layer using it into one group — wrong grouping, the classic Torch-Pruning complaint — so every use
gets a private initializer first; the untouched copies cost nothing once the removal slices them.
"""

from __future__ import annotations

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


def untie_weights(model: ir.Model) -> int:
    """Give every use of a shared (or Identity-forwarded) weight its own initializer; return how many."""
    graph = model.graph
    copies = 0
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
            copies += 1
    if copies:
        RemoveUnusedNodesPass()(model)
    return copies
