"""Walks over graphs and nodes: every subgraph at any depth, outer graphs first, every node once."""

from __future__ import annotations

import collections

import onnx_ir as ir

from onnxcompress import walk

NESTED = """
<ir_version: 8, opset_import: ["" : 17]>
g (bool c, float[2] x) => (float[2] y) {
    y = If (c) <
        then_branch = t () => (float[2] r) {
            r = If (c) <then_branch = tt () => (float[2] a) { a = Relu(x) }, else_branch = te () => (float[2] b) { b = Neg(x) }>
        },
        else_branch = e () => (float[2] r2) { r2 = Abs(x) }
    >
}
"""


def test_graphs_finds_every_subgraph_outer_ones_first():
    model = ir.from_onnx_text(NESTED)
    found = walk.graphs(model.graph)
    assert found[0] is model.graph and len(found) == 5
    assert [g.name for g in found[1:3]] == ["t", "e"] and {g.name for g in found[3:]} == {"tt", "te"}


def test_nodes_are_every_node_once_as_the_recursive_iterator_sees_them():
    model = ir.from_onnx_text(NESTED)
    ops = collections.Counter(node.op_type for node in walk.nodes(model.graph))
    assert ops == collections.Counter(node.op_type for node in ir.traversal.RecursiveGraphIterator(model.graph))
    assert ops == {"If": 2, "Relu": 1, "Neg": 1, "Abs": 1}
