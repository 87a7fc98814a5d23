"""Tests for passes/values.py: what every pass family reads as a constant and as a rank."""

from __future__ import annotations

import numpy as np
import onnx.parser
import onnx_ir as ir

from onnxcompress.passes.values import constant, is_constant, rank, rank_or_zero

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x, float[4] bias) => (float[N, 4] y) <float[4] w = {1.0, 2.0, 3.0, 4.0}> {
  k = Constant <value = float[4] {5.0, 6.0, 7.0, 8.0}> ()
  a = Add(x, w)
  b = Add(a, k)
  y = Add(b, bias)
}
"""


def _values() -> dict[str, ir.Value]:
    model = ir.from_proto(onnx.parser.parse_model(TEXT))
    return {v.name: v for node in model.graph for v in (*node.inputs, *node.outputs)}


def test_initializers_and_constant_nodes_are_constants_graph_inputs_are_not():
    values = _values()
    assert np.array_equal(constant(values["w"]), [1, 2, 3, 4])
    assert np.array_equal(constant(values["k"]), [5, 6, 7, 8])
    assert constant(values["bias"]) is None and not is_constant(values["bias"])
    assert constant(values["a"]) is None and not is_constant(values["a"])
    assert is_constant(values["w"]) and is_constant(values["k"]) and not is_constant(None)


def test_rank_is_none_when_unknown_and_rank_or_zero_is_zero():
    values = _values()
    assert rank(values["x"]) == 2 and rank_or_zero(values["x"]) == 2
    assert rank(values["a"]) is None and rank_or_zero(values["a"]) == 0
    assert rank(None) is None and rank_or_zero(None) == 0
