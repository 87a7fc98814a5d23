"""ONNX ops in torch: each family computes what the ONNX reference and ONNX Runtime compute."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx_ir as ir
import pytest

torch = pytest.importorskip("torch")

from onnxcompress.errors import UsageError  # noqa: E402
from onnxcompress.passes.training.graph_module import GraphModule  # noqa: E402
from onnxcompress.passes.training.torch_ops import op, to_numpy  # noqa: E402

from ..pruning.conftest import run_everywhere, text_model  # noqa: E402


# The limits a node test may meet: types torch has no tensor or kernel for, random training modes, and the variants
# the view does not simulate. Anything else must compute what the reference computes.
DECLINED = re.compile(r"^cannot train this graph in PyTorch: (tensors of type \w+ are not supported|Cast to \w+ is not supported"
                      r"|.*not implemented for 'UInt(16|32|64)'|(Dropout|BatchNormalization) in training mode is not supported"
                      r"|Resize with (antialias when shrinking|keep_aspect_ratio_policy other than stretch) is not supported"
                      r"|MaxPool's Indices output is not supported|GatherND with batch_dims is not supported"
                      r"|(Quantize|Dequantize)Linear (with block_size|to torch.uint16).*)$")


def single_op_cases():
    """The onnx wheel's node tests of one op the view runs (not the copies expanded into other ops)."""
    from onnx.backend.test.case.node import collect_testcases

    def runs_one_op(case) -> bool:
        if case.name.endswith("_expanded") or "_expanded_" in case.name or len(case.model.graph.node) != 1:
            return False
        return op(next(iter(ir.serde.deserialize_model(case.model).graph))) is not None

    return [case for case in collect_testcases() if runs_one_op(case)]


@pytest.mark.parametrize("case", single_op_cases(), ids=lambda case: case.name.removeprefix("test_"))
def test_each_op_computes_what_the_onnx_reference_computes_or_declines_in_one_line(case):
    # Attention (3-D/4-D, GQA, caches, masks, windows, softcap), pools (asymmetric and wide pads, dilations,
    # ceil_mode), Resize (every mode and coordinate transform), and the rest, each against its expected outputs
    model = ir.serde.deserialize_model(case.model)
    for inputs, expected in case.data_sets:
        feeds = {value.name: as_array(array) for value, array in zip(model.graph.inputs, inputs) if array is not None}
        try:
            with torch.no_grad():
                got = GraphModule(model)(feeds)
        except UsageError as exc:
            assert DECLINED.match(str(exc)), str(exc)
            continue
        for value, want in zip(model.graph.outputs, expected):
            want = as_array(want)
            tolerance = 1e-4 if want.dtype in (np.float32, np.float64) else 1e-2
            np.testing.assert_allclose(to_numpy(got[value.name]).astype(np.float64), want.astype(np.float64), rtol=tolerance, atol=tolerance)


def as_array(value) -> np.ndarray:
    return onnx.numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


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


# PyTorch's dynamo export pools EfficientNet's last 7x7 map with a 640x640 kernel and ceil_mode; a kernel this wide
# would ask for hundreds of GB if its overhang were padded onto the input.
WIDE_POOL = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8, 7, 7] x) => (float[N, 8, 1, 1] y) {{
  y = {op}<kernel_shape = [65536, 65536], strides = [65536, 65536], ceil_mode = 1, pads = [0, 0, 0, 0]>(x)
}}"""


@pytest.mark.parametrize("pool", ["AveragePool", "MaxPool"])
def test_a_pool_wider_than_its_input_pools_the_input_as_onnx_runtime_does(pool):
    model = ir.from_onnx_text(WIDE_POOL.format(op=pool))
    x = np.random.default_rng(0).standard_normal((2, 8, 7, 7)).astype(np.float32)
    with torch.no_grad():
        got = GraphModule(model)({"x": x})["y"].numpy()
    np.testing.assert_allclose(got, run_everywhere(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)
