"""Build the channel dependency graph of a model by running every node's rule.

Shape inference runs first (rules need static sizes). Graph inputs and outputs, initializers that
are also graph inputs (overridable at run time), nodes inside subgraphs and nodes without a rule
freeze every axis they touch, with a reason naming the op and node.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from onnxcompress.passes.pruning.graph import NOT_A_CHANNEL, ChannelGraph, Coupler, rank
from onnxcompress.passes.pruning.rules import RULES, Refused


def infer_shapes(model: ir.Model) -> None:
    """Fill in static shapes of intermediate values in place (onnx shape inference, data propagation)."""
    ShapeInferencePass()(model)


def build_channel_graph(model: ir.Model, *, layernorm: bool = False) -> ChannelGraph:
    """Couple and freeze the elements of every tensor axis in the main graph."""
    graph = ChannelGraph()
    main = model.graph
    for node in main:
        coupler = Coupler(graph, node, layernorm=layernorm)
        rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None:
            coupler.freeze_unmentioned(f"no pruning rule for {node.op_type}")
            continue
        try:
            rule.couple(node, coupler)
        except Refused as refusal:
            coupler.mentioned.clear()
            coupler.freeze_unmentioned(str(refusal))
            continue
        coupler.freeze_unmentioned(NOT_A_CHANNEL)
    _freeze_boundary(graph, main)
    return graph


def _freeze_boundary(graph: ChannelGraph, main: ir.Graph) -> None:
    boundary = [*main.inputs, *main.outputs]
    boundary += [v for v in main.initializers.values() if v.is_graph_input()]
    for node in main.all_nodes():
        if node.graph is not main:
            boundary += [v for v in node.inputs if v is not None]
    for value in boundary:
        for axis in range(rank(value)):
            slot = graph.slot(value, axis)
            if slot is not None:
                graph.freeze(slot, f"graph input/output {value.name!r}")
