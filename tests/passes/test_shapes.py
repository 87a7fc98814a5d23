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
