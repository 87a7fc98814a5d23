"""Whole-model shape inference for passes: types and shapes set on the values, known dims kept, one serialization."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from onnxcompress import io
from onnxcompress.passes.shapes import infer_shapes

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 8] y) {
    s = Shape(x)
    w = Constant<value = float[4, 8] {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}>()
    h = MatMul(x, w)
    y = Relu(h)
}
"""


def _value(model: ir.Model, name: str) -> ir.Value:
    return next(v for node in model.graph for v in node.outputs if v.name == name)


def test_every_value_gets_its_type_and_shape_and_a_named_dim_stays():
    model = ir.from_onnx_text(MODEL)
    infer_shapes(model)
    h = _value(model, "h")
    assert h.dtype == ir.DataType.FLOAT and h.shape.dims[1] == 8 and h.shape.dims[0].value == "N"
    assert _value(model, "s").shape.dims == (2,)


def test_a_known_dimension_is_never_replaced():
    model = ir.from_onnx_text(MODEL)
    _value(model, "h").shape = ir.Shape(["batch", 8])
    infer_shapes(model)
    assert _value(model, "h").shape.dims[0].value == "batch"


def test_a_given_serialization_is_read_instead_of_serializing_again(monkeypatch):
    model = ir.from_onnx_text(MODEL)
    proto = io.to_proto(model)
    monkeypatch.setattr(ir.serde, "serialize_model", lambda model: pytest.fail("serialized again"))
    infer_shapes(model, proto)
    assert _value(model, "y").shape.dims[1] == 8


BRANCHES = """
<ir_version: 8, opset_import: ["" : 17]>
g (bool cached, float[B, S, 4] x, float[B, P, 4] past) => (float[B, T, 4] y) {
    y = If (cached) <
        then_branch = with_past () => (float[B, T, 4] y) {
            one = Constant <value = int64[1] {1}> ()
            four = Constant <value = int64[2] {4, 4}> ()
            c = Concat <axis = 0> (one, four)
            y = Concat <axis = 1> (past, x)
        },
        else_branch = without () => (float[B, T, 4] y) {
            s = Shape(x)
            c = Concat <axis = 0> (s)
            r = Reshape(x, c)
            y = Identity(r)
        }
    >
}
"""


def test_branches_computing_values_of_one_name_keep_their_own_shapes():
    # Optimum's merged decoders name the values of both branches alike; onnx's data propagation keys values by name
    # across subgraphs and gave the else branch's reshape the then branch's constant shape [1, 4, 4] (and the graph
    # outputs of a merged T5 decoder such a shape)
    model = ir.from_onnx_text(BRANCHES)
    infer_shapes(model)
    else_graph = next(iter(model.graph)).attributes["else_branch"].value
    reshaped = next(v for node in else_graph for v in node.outputs if v.name == "r")
    assert reshaped.shape is None or reshaped.shape.dims != (1, 4, 4)
    assert [d.value for d in model.graph.outputs[0].shape.dims[:2]] == ["B", "T"]
