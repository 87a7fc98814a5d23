"""Calibration data fitted to the model: which arrays carry samples, feeds in the model's own batch, and
data that does not fit refused in one UsageError line naming what is wrong."""

from __future__ import annotations

import re

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress.calibration import ArrayReader, validate_reader
from onnxcompress.calibration.validation import FIXED, SAMPLES, UNBATCHED, feed_layout, first_samples, model_batches
from onnxcompress.errors import UsageError

TWO_INPUTS = """
<ir_version: 8, opset_import: ["" : 17]>
pair (float[batch, seq, 8] x, int64[batch, seq] ids) => (float[batch, seq, 8] y) {
  y = Identity(x)
}
"""


@pytest.fixture
def model() -> ir.Model:
    return ir.from_onnx_text(TWO_INPUTS)


def _feeds(samples: int = 4, seq: int = 5, **overrides) -> dict[str, np.ndarray]:
    feeds = {"x": np.zeros((samples, seq, 8), np.float32), "ids": np.zeros((samples, seq), np.int64)}
    feeds.update(overrides)
    return {k: v for k, v in feeds.items() if v is not None}


def _error(model: ir.Model, feeds: dict[str, np.ndarray], batch_size: int = 2) -> str:
    with pytest.raises(UsageError) as caught:
        validate_reader(ArrayReader(feeds, batch_size=batch_size), model)
    return str(caught.value)


def test_matching_data_returns_the_sample_count(model):
    assert validate_reader(ArrayReader(_feeds(samples=5), batch_size=2), model) == 5


def test_missing_input(model):
    assert _error(model, _feeds(ids=None)) == "calibration data lacks model input(s) ['ids']; it has ['x']"


def test_unknown_input(model):
    message = _error(model, _feeds(extra=np.zeros((4, 1), np.float32)))
    assert message == "calibration data has input(s) ['extra'] the model does not take; its inputs are ['x', 'ids']"


def test_wrong_dtype(model):
    message = _error(model, _feeds(x=np.zeros((4, 5, 8), np.float64)))
    assert message == "calibration input 'x' is float64 but the model expects float32"


def test_wrong_static_dim(model):
    message = _error(model, _feeds(x=np.zeros((4, 5, 7), np.float32)))
    assert message == "calibration input 'x' has shape (2, 5, 7) but the model expects (batch, seq, 8)"


def test_wrong_rank(model):
    message = _error(model, _feeds(ids=np.zeros((4, 5, 1), np.int64)))
    assert message == "calibration input 'ids' has shape (2, 5, 1) but the model expects (batch, seq)"


def test_dynamic_dims_shared_by_name_must_agree(model):
    message = _error(model, _feeds(ids=np.zeros((4, 6), np.int64)))
    assert message == "calibration input 'ids' has shape (2, 6) but the model expects (batch, seq)"


def test_empty_reader(model):
    message = _error(model, _feeds(samples=0))
    assert message == "calibration data is empty: the reader yielded no samples"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(model, bad):
    x = np.zeros((4, 5, 8), np.float32)
    x[3, 0, 0] = bad
    assert _error(model, _feeds(x=x)) == "calibration input 'x' has NaN or inf values (batch 1)"


def test_messages_are_one_line(model):
    assert not re.search(r"\n", _error(model, _feeds(x=np.zeros((4, 5, 7), np.float32))))


PAIRS = """
<ir_version: 8, opset_import: ["" : 17]>
pairs (float[2, 4] x) => (float[2, 4] y) { y = Relu(x) }
"""


@pytest.mark.parametrize("batch, model_batch", [("N", None), ("1", 1)])
def test_layout_holds_what_has_no_sample_axis(stateful_model, batch, model_batch):
    shapes = {"x": (16, 4), "gain": (), "state": (2, 4), "step": (), "bias": (4,)}
    layout = feed_layout(stateful_model(batch), shapes)
    assert layout.roles == {"x": SAMPLES, "gain": FIXED, "state": FIXED, "step": FIXED, "bias": UNBATCHED}
    assert (layout.samples, layout.model_batch) == (16, model_batch)
    assert layout.held() == {"gain", "state", "step", "bias"}


def test_layout_of_arrays_that_are_one_model_batch_already(stateful_model):
    model = stateful_model("1")
    one_sample = feed_layout(model, {"x": (1, 4), "gain": (), "state": (2, 4), "step": (), "bias": (1, 4)})
    assert one_sample.roles == {"x": FIXED, "gain": FIXED, "state": FIXED, "step": FIXED, "bias": FIXED}
    assert one_sample.samples == 1
    carried = feed_layout(model, {"x": (1, 4), "gain": (), "state": (2, 4), "step": (), "bias": (1, 4)}, carrying={"x", "bias"})
    assert (carried.roles["x"], carried.roles["bias"], carried.roles["state"]) == (SAMPLES, SAMPLES, FIXED)


def test_layout_without_a_model_holds_only_scalars():
    layout = feed_layout(None, {"x": (16, 4), "gain": (), "state": (16, 2)})
    assert layout.roles == {"x": SAMPLES, "gain": FIXED, "state": SAMPLES}


@pytest.mark.parametrize("batch, runs", [("N", [5, 5, 5, 1]), ("1", [1] * 16)])
def test_feeds_repeat_the_held_inputs_with_every_chunk(stateful_model, stateful_feeds, batch, runs):
    model, feeds = stateful_model(batch), stateful_feeds()
    chunks = [feed.arrays() for feed in model_batches(ArrayReader(feeds, batch_size=5, model=model), model)]
    assert [len(chunk["x"]) for chunk in chunks] == runs
    np.testing.assert_array_equal(np.concatenate([chunk["x"] for chunk in chunks]), feeds["x"])
    np.testing.assert_array_equal(np.concatenate([chunk["bias"] for chunk in chunks]), np.tile(feeds["bias"], (16, 1)))
    for chunk in chunks:
        assert (chunk["gain"], chunk["step"]) == (feeds["gain"], feeds["step"])
        np.testing.assert_array_equal(chunk["state"], feeds["state"])


def test_samples_are_chunked_in_the_model_batch_across_reader_batches():
    model = ir.from_onnx_text(PAIRS)
    x = np.arange(17 * 4, dtype=np.float32).reshape(17, 4)
    chunks = [feed.arrays()["x"] for feed in model_batches(ArrayReader({"x": x}, batch_size=5), model)]
    assert [len(chunk) for chunk in chunks] == [2] * 8  # the 17th sample, less than a chunk, is dropped
    np.testing.assert_array_equal(np.concatenate(chunks), x[:16])
    assert validate_reader(ArrayReader({"x": x}, batch_size=5), model) == 16


def test_fewer_samples_than_the_model_batch():
    with pytest.raises(UsageError, match=r"^calibration data has fewer samples \(1\) than the model's batch of 2$"):
        validate_reader(ArrayReader({"x": np.zeros((1, 4), np.float32)}), ir.from_onnx_text(PAIRS))


@pytest.mark.parametrize("overrides, message", [
    ({"x": np.zeros((16, 5), np.float32)}, "calibration input 'x' has shape (1, 5) but the model expects (1, 4)"),
    ({"bias": np.zeros((15, 4), np.float32)}, "calibration inputs have different sample counts: {'x': 16, 'bias': 15}"),
    ({"state": np.zeros((3, 4), np.float32)}, "calibration inputs have different sample counts: {'x': 16, 'state': 3}"),
    ({"gain": np.ones(16, np.float32)}, "calibration input 'gain' has shape (1,) but the model expects ()"),
    ({"step": None}, "calibration data lacks model input(s) ['step']; it has ['bias', 'gain', 'state', 'x']"),
])
def test_inconsistent_data_is_refused_in_one_line(stateful_model, stateful_feeds, overrides, message):
    model = stateful_model("1")
    feeds = stateful_feeds(**overrides)
    with pytest.raises(UsageError) as caught:
        validate_reader(ArrayReader(feeds, model=model), model)
    assert str(caught.value) == message


@pytest.mark.parametrize(("samples", "batch_size", "rows", "described"), [
    (3, 2, [0, 1, 2], "the first 3 calibration samples"),  # across the reader's batches
    (6, 2, [0, 1, 2, 3, 0, 1], "the first 4 calibration samples, repeated to the batch of 6"),
    (1, 4, [0], "the first calibration sample"),
])
def test_first_samples_fill_the_batch_asked_for(model, samples, batch_size, rows, described):
    feeds = _feeds(x=np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 5, 8), np.float32))
    got, text = first_samples(ArrayReader(feeds, batch_size=batch_size), model, samples)
    assert got["x"][:, 0, 0].tolist() == rows and got["ids"].shape == (samples, 5)
    assert text == described


class PaddedPerBatch:
    """A text reader padding each batch to its own longest sequence: batches of 2 samples at lengths 5, 7, 5."""

    input_names = ["x", "ids"]

    def batches(self):
        for start, seq in ((0, 5), (2, 7), (4, 5)):
            yield _feeds(2, seq, x=np.full((2, seq, 8), 0, np.float32) + np.arange(start, start + 2, dtype=np.float32)[:, None, None])


def test_first_samples_pass_over_batches_of_another_length(model):
    got, text = first_samples(PaddedPerBatch(), model, 4)  # joining the length-7 batch cannot be done
    assert got["x"][:, 0, 0].tolist() == [0, 1, 4, 5] and got["x"].shape == (4, 5, 8) and got["ids"].shape == (4, 5)
    assert text == "the first 4 calibration samples"
