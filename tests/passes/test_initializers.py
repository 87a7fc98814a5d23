"""``add_initializer``: a new constant under a free name, typed from the array."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.initializers import add_initializer


def test_names_are_made_unique_and_dtype_is_kept() -> None:
    graph = ir.Graph([], [], nodes=[])
    first = add_initializer(graph, "w", np.ones((2, 3), np.float32))
    second = add_initializer(graph, "w", np.zeros(4, np.int8))
    assert (first.name, second.name) == ("w", "w_1")
    assert second.dtype == ir.DataType.INT8 and list(second.shape) == [4]
    assert set(graph.initializers) == {"w", "w_1"}
