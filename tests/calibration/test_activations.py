"""stream_activations: intermediate tensors per batch, equal to NumPy, on a copy of the model."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import checks
from onnxcompress.calibration import ArrayReader, expose_tensors, float_tensor_names, stream_activations
from onnxcompress.errors import UsageError


@pytest.fixture
def inputs() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)


@pytest.mark.parametrize("optimization", ["disable", "all"])
def test_intermediate_tensors_equal_numpy_batch_by_batch(small_model, small_reference, inputs, optimization):
    reader = ArrayReader({"x": inputs}, batch_size=4)
    streamed = list(stream_activations(small_model, reader, ["h", "r", "y", "x"], optimization=optimization))
    assert [len(batch["h"]) for batch in streamed] == [4, 4, 2]
    expected = small_reference(inputs)
    for name in ("h", "r", "y"):
        got = np.concatenate([batch[name] for batch in streamed])
        np.testing.assert_allclose(got, expected[name], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([batch["x"] for batch in streamed]), inputs)


def test_exposing_tensors_leaves_the_original_model_alone(small_model):
    exposed = expose_tensors(small_model, ["h", "r", "y"])
    assert [v.name for v in exposed.graph.outputs] == ["y", "h", "r"]
    assert [v.name for v in small_model.graph.outputs] == ["y"]
    assert checks.graph_problems(exposed) == []


def test_unknown_tensors_are_a_usage_error(small_model, inputs):
    with pytest.raises(UsageError, match=r"^tensor\(s\) \['nope'\] not found in the model's main graph$"):
        next(stream_activations(small_model, ArrayReader({"x": inputs}), ["h", "nope"]))


def test_batches_are_checked_while_streaming(small_model):
    reader = ArrayReader({"x": np.zeros((3, 5), np.float32)})
    with pytest.raises(UsageError, match=r"^calibration input 'x' has shape \(3, 5\) but the model expects \(N, 4\)$"):
        next(stream_activations(small_model, reader, ["h"]))


def test_float_tensor_names_lists_float_node_outputs():
    model = ir.from_onnx_text(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (int64[2] s) {
          a = Relu(x)
          b = Sigmoid(a)
          s = Shape(b)
        }
        """
    )
    assert float_tensor_names(model) == ["a", "b"]
