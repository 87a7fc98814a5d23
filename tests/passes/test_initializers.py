"""``add_initializer``: a new constant under a free name, typed from the array."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.initializers import add_initializer, drop_if_unused


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
