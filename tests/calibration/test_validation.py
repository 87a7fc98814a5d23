"""Calibration data that does not fit the model is a one-line UsageError naming what is wrong."""

from __future__ import annotations

import re

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress.calibration import ArrayReader, validate_reader
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
