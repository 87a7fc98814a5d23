"""A recurrent layer's initial states that are zeros made at run time, dropped: ONNX's default initial state is zeros.

PyTorch's export makes them with ``ConstantOfShape`` over the layers × directions, the batch and the hidden size, and
slices each layer's from that one tensor: it ties every layer's hidden units to the others' and to the shape
arithmetic, which froze them all. The rewrite is exact.
"""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common

from onnxcompress.passes.values import RESHAPING, behind_reshapes, constant, input_at

STATE_INPUTS = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}  # initial_h (and an LSTM's initial_c)
SELECTING = ("Slice", "Expand", *RESHAPING)  # ops whose output holds only values of their first input


def drop_zero_initial_states(model: ir.Model) -> int:
    """Drop every initial state of a recurrent node in the main graph that is all zeros (``_is_zeros``) and remove
    what made it, if nothing else reads it; how many were dropped."""
    dropped = 0
    for node in model.graph:
        for index in STATE_INPUTS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ():
            state = input_at(node, index)
            if state is not None and not state.is_graph_input() and _is_zeros(state):
                node.replace_input_with(index, None)
                dropped += 1
    if dropped:
        common.RemoveUnusedNodesPass()(model)
    return dropped


def _is_zeros(value: ir.Value) -> bool:
    """Whether ``value`` holds zeros only: a constant of zeros or a zero-filled ``ConstantOfShape``, seen through
    slices, expansions and reshapes (PyTorch's dynamo export expands a scalar zero)."""
    source = behind_reshapes(value, SELECTING)
    array, producer = constant(source), source.producer()
    if array is not None:
        return not array.any()
    if producer is None or producer.op_type != "ConstantOfShape":
        return False
    fill = producer.attributes.get("value")
    return fill is None or not fill.as_tensor().numpy().any()
