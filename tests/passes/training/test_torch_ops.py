"""ONNX ops in torch: each family computes what the ONNX reference and ONNX Runtime compute."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

torch = pytest.importorskip("torch")

from onnxcompress.passes.training.graph_module import GraphModule  # noqa: E402

from ..pruning.conftest import run_everywhere, text_model  # noqa: E402


def attention_cases():
    """The onnx wheel's node tests of Attention (opsets 23-25), but the bfloat16 ones (numpy has no such type for torch
    to read) and the copies expanded into standard ops."""
    from onnx.backend.test.case.node import collect_testcases

    return [case for case in collect_testcases() if case.name.startswith("test_attention")
            and not case.name.endswith("_expanded") and "bf16" not in case.name]


@pytest.mark.parametrize("case", attention_cases(), ids=lambda case: case.name.removeprefix("test_attention_"))
def test_attention_computes_what_the_onnx_reference_computes(case):
    # 3-D and 4-D inputs, grouped-query heads, past key/value, masks (additive, boolean, padded), causal and sliding
    # windows after a cache, softcap, every qk_matmul_output_mode, fully masked rows
    model = ir.serde.deserialize_model(case.model)
    for inputs, expected in case.data_sets:
        feeds = {value.name: array for value, array in zip(model.graph.inputs, inputs) if array is not None}
        with torch.no_grad():
            got = GraphModule(model)(feeds)
        for value, want in zip(model.graph.outputs, expected):
            tolerance = 1e-5 if want.dtype == np.float32 else 1e-2
            np.testing.assert_allclose(got[value.name].float().numpy(), want.astype(np.float32), rtol=tolerance, atol=tolerance)


# A scikit-learn pipeline (StandardScaler, MLPClassifier) as skl2onnx writes it with zipmap=False: label and probabilities.
SKLEARN_MLP = """<ir_version: 8, opset_import: ["" : 17, "ai.onnx.ml" : 1]>
g (float[N,6] x) => (int64[N] label, float[N,3] probabilities) {
  scaled = ai.onnx.ml.Scaler<offset=[0.5, -1.0, 0.0, 2.0, 0.1, 0.0], scale=[2.0, 0.5, 1.0, 1.5, 3.0, 1.0]>(x)
  normal = ai.onnx.ml.Normalizer<norm="NORM">(scaled)
  h = MatMul(normal, w1)
  r = Relu(h)
  z = MatMul(r, w2)
  probabilities = Softmax<axis=1>(z)
  index = ArgMax<axis=1>(probabilities)
  picked = ai.onnx.ml.ArrayFeatureExtractor(classes, index)
  flat = Reshape(picked, minus_one)
  label = Cast<to=7>(flat)
}"""


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
def test_scikit_learn_pipelines_as_skl2onnx_writes_them_run_as_in_onnx_runtime(norm):
    model = text_model(SKLEARN_MLP.replace("NORM", norm), {"w1": (6, 8), "w2": (8, 3)})
    for name, array in (("classes", np.array([3, 5, 7], np.int64)), ("minus_one", np.array([-1], np.int64))):
        model.graph.register_initializer(ir.Value(name=name, const_value=ir.tensor(array, name=name)))
    feeds = {"x": np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)}
    expected = run_everywhere(model, feeds)
    with torch.no_grad():
        got = GraphModule(model)(feeds)
    np.testing.assert_allclose(got["probabilities"].numpy(), expected["probabilities"], rtol=1e-5, atol=1e-6)
    assert got["label"].tolist() == expected["label"].tolist() and set(expected["label"]) <= {3, 5, 7}
