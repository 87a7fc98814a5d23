"""Model statistics: params, nodes, op histogram, signature and serialized size."""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress import io, stats

WITH_CONSTANT = """
<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[N, 3] x) => (float[N, 3] y) {
  c = Constant <value = float[3] {1.0, 2.0, 3.0}> ()
  a = Add(x, c)
  y = com.microsoft.Gelu(a)
}
"""


def test_mlp_stats(mlp_model, mlp_path):
    st = stats.model_stats(mlp_model)
    assert st.params == 16 * 32 + 32 + 32 * 4
    assert st.nodes == 4 and st.op_histogram == {"MatMul": 2, "Add": 1, "Relu": 1}
    assert st.opset == 17
    assert [(i.name, i.dtype, i.shape) for i in st.inputs] == [("x", "float", ["N", 16])]
    assert [(o.name, o.shape) for o in st.outputs] == [("y", ["N", 4])]
    assert st.size_bytes == mlp_path.stat().st_size
    assert st.to_dict()["inputs"][0]["name"] == "x"


def test_constant_nodes_count_as_params_and_other_domains_are_labelled():
    st = stats.model_stats(ir.from_onnx_text(WITH_CONSTANT))
    assert st.params == 3
    assert st.op_histogram == {"Constant": 1, "Add": 1, "com.microsoft::Gelu": 1}


def test_initializers_that_are_inputs_are_not_listed_as_inputs(mlp_model):
    mlp_model.graph.inputs.append(mlp_model.graph.initializers["b1"])
    st = stats.model_stats(mlp_model)
    assert [i.name for i in st.inputs] == ["x"]
    assert stats.serialized_size(mlp_model) == io.to_proto(mlp_model).ByteSize()
