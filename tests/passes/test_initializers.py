"""``add_initializer``: a new constant under a free name, typed from the array."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.initializers import add_initializer, drop_if_unused, drop_unused_in_subgraphs


def test_names_are_made_unique_and_dtype_is_kept() -> None:
    graph = ir.Graph([], [], nodes=[])
    first = add_initializer(graph, "w", np.ones((2, 3), np.float32))
    second = add_initializer(graph, "w", np.zeros(4, np.int8))
    assert (first.name, second.name) == ("w", "w_1")
    assert second.dtype == ir.DataType.INT8 and list(second.shape) == [4]
    assert set(graph.initializers) == {"w", "w_1"}


def test_an_initializer_goes_only_once_nothing_reads_it() -> None:
    graph = ir.Graph([], [], nodes=[])
    weight = add_initializer(graph, "w", np.ones(3, np.float32))
    node = ir.node("Neg", [weight])
    graph.append(node)
    drop_if_unused(graph, weight)
    assert "w" in graph.initializers
    node.replace_input_with(0, add_initializer(graph, "w2", np.zeros(3, np.float32)))
    drop_if_unused(graph, weight)
    assert set(graph.initializers) == {"w2"}


def test_subgraph_initializers_nothing_reads_go_and_read_ones_stay() -> None:
    # fuse:opset=23 on Optimum's merged BART decoder left 52 per branch; ORT warned once per initializer on load
    model = ir.from_onnx_text("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[2] x) => (float[2] y) {
          y = If (c) <then_branch = t () => (float[2] r) { r = Relu(x) },
                      else_branch = e () => (float[2] r2) { r2 = Neg(x) }>
        }""")
    branch = next(iter(model.graph)).attributes["then_branch"].value
    read = add_initializer(branch, "scale", np.ones(2, np.float32))
    add_initializer(branch, "left_over", np.zeros(2, np.float32))
    next(iter(branch)).replace_input_with(0, read)
    assert drop_unused_in_subgraphs(model.graph) == 1
    assert list(branch.initializers) == ["scale"]
