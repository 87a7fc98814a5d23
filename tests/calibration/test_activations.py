"""stream_activations: intermediate tensors per batch, equal to NumPy, on a copy of the model."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import checks
from onnxcompress.calibration import ArrayReader, expose_tensors, float_tensor_names, stream_activations
from onnxcompress.calibration.activations import first_batch_activations
from onnxcompress.errors import UsageError


@pytest.fixture
def inputs() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)


@pytest.mark.parametrize("optimization", ["disable", "all"])
def test_intermediate_tensors_equal_numpy_batch_by_batch(small_model, small_reference, inputs, optimization):
    reader = ArrayReader({"x": inputs}, batch_size=4)
    streamed = list(stream_activations(small_model, reader, ["h", "r", "y", "x"], optimization=optimization))
    assert [len(batch["h"]) for batch in streamed] == [1, 3, 4, 2]  # a one-sample run first measures the tensors
    expected = small_reference(inputs)
    for name in ("h", "r", "y"):
        got = np.concatenate([batch[name] for batch in streamed])
        np.testing.assert_allclose(got, expected[name], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([batch["x"] for batch in streamed]), inputs)


def test_runs_are_cut_to_the_byte_budget(small_model, small_reference, inputs):
    row_bytes = 4 * (2 + 2 + 4)  # h, r and x of one sample, float32
    reader = ArrayReader({"x": inputs}, batch_size=8)
    streamed = list(stream_activations(small_model, reader, ["h", "r", "x"], max_bytes=3 * row_bytes))
    assert [len(batch["h"]) for batch in streamed] == [1, 3, 3, 1, 2]
    np.testing.assert_allclose(np.concatenate([b["r"] for b in streamed]), small_reference(inputs)["r"], rtol=1e-6)


def test_a_fixed_batch_axis_is_never_split(inputs):
    model = ir.from_onnx_text(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[5, 4] x) => (float[5, 4] y) { y = Relu(x) }
        """
    )
    streamed = list(stream_activations(model, ArrayReader({"x": inputs}, batch_size=5), ["y"], max_bytes=1))
    assert [len(batch["y"]) for batch in streamed] == [5, 5]


def test_first_batch_activations_join_the_runs_of_the_first_batch_only(small_model, small_reference, inputs):
    first = first_batch_activations(small_model, ArrayReader({"x": inputs}, batch_size=6), ["h", "y", "h"])
    assert list(first) == ["h", "y"]
    np.testing.assert_allclose(first["y"], small_reference(inputs[:6])["y"], rtol=1e-6)


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


SEQUENCE_FIRST = """
<ir_version: 8, opset_import: ["" : 17]>
encoder (float[N, 5, 4] x) => (float[5, N, 2] h) {
  w = Constant <value = float[4, 2] {1, -1, 0.5, 2, -2, 0.25, 1, 1}> ()
  t = Transpose <perm = [1, 0, 2]> (x)
  h = MatMul(t, w)
}
"""


def test_first_batch_activations_join_a_sequence_first_tensor_along_its_batch_axis():
    x = np.random.default_rng(4).standard_normal((10, 5, 4)).astype(np.float32)
    model = ir.from_onnx_text(SEQUENCE_FIRST)
    runs = [run["h"].shape for run in stream_activations(model, ArrayReader({"x": x}, batch_size=6), ["h"])]
    assert runs[:2] == [(5, 1, 2), (5, 5, 2)]  # one sample, then the rest of the first batch
    first = first_batch_activations(model, ArrayReader({"x": x}, batch_size=6), ["h", "t"])
    expected = x[:6].transpose(1, 0, 2)
    np.testing.assert_array_equal(first["t"], expected)
    np.testing.assert_allclose(first["h"], expected @ np.array([[1, -1], [0.5, 2], [-2, 0.25], [1, 1]], np.float32), rtol=1e-6)


def test_a_fixed_batch_of_one_is_fed_one_sample_per_run(conv_model):
    images = np.random.default_rng(5).standard_normal((7, 3, 8, 8)).astype(np.float32)
    fixed = list(stream_activations(conv_model(1), ArrayReader({"x": images}, batch_size=4), ["c", "y"]))
    free = list(stream_activations(conv_model("N"), ArrayReader({"x": images}, batch_size=4), ["c", "y"]))
    assert [run["y"].shape[0] for run in fixed] == [1] * 7
    for name in ("c", "y"):
        np.testing.assert_allclose(np.concatenate([r[name] for r in fixed]), np.concatenate([r[name] for r in free]), rtol=1e-5, atol=1e-5)
