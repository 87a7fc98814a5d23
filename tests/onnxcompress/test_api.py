"""``onnxcompress.run``: a path, an ``onnx.ModelProto`` or an ``ir.Model`` in, the same kind out, the input left as it
was, and calibration data in every form users have (a path, a dict, feed dicts, an ONNX Runtime reader)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnxruntime.quantization import CalibrationDataReader

import onnxcompress as oc
from onnxcompress import io

QUANTIZE = ["quantize-static:method=minmax"]
QUICK = oc.Measurement(benchmark=False)


@pytest.fixture
def samples() -> np.ndarray:
    """32 calibration samples for the CNN's input ``x``."""
    return np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32)


class OrtReader(CalibrationDataReader):
    """What an ONNX Runtime user already has: a reader handing out feeds of 8 samples until None."""

    def __init__(self, samples: np.ndarray) -> None:
        self.feeds = iter([{"x": samples[start : start + 8]} for start in range(0, len(samples), 8)])

    def get_next(self):
        return next(self.feeds, None)


def _bytes(model: ir.Model | onnx.ModelProto) -> bytes:
    return (model if isinstance(model, onnx.ModelProto) else io.to_proto(model)).SerializeToString()


def test_calibration_from_an_ort_reader_a_dict_and_a_path_calibrate_alike(cnn_model, samples, tmp_path):
    path = io.save_arrays(tmp_path / "calibration.npz", {"x": samples})
    models = [oc.run(cnn_model, QUANTIZE, calibration=data, measurement=QUICK).model for data in (OrtReader(samples), {"x": samples}, path)]
    assert "QuantizeLinear" in {node.op_type for node in models[0].graph}
    assert _bytes(models[0]) == _bytes(models[1]) == _bytes(models[2])
    shifted = oc.run(cnn_model, QUANTIZE, calibration={"x": samples + 1}, measurement=QUICK).model
    assert _bytes(shifted) != _bytes(models[0])  # the ranges come from the data given


def test_a_model_proto_gives_a_model_proto_and_stays_as_it_was(cnn_model, samples):
    proto = io.to_proto(cnn_model)
    before = proto.SerializeToString()
    result = oc.run(proto, QUANTIZE, calibration={"x": samples}, measurement=QUICK)
    assert isinstance(result.model, onnx.ModelProto) and "QuantizeLinear" in {n.op_type for n in result.model.graph.node}
    assert proto.SerializeToString() == before


def test_an_ir_model_is_copied_unless_asked_to_change_in_place(cnn_model, samples):
    before = _bytes(cnn_model)
    result = oc.run(cnn_model, QUANTIZE, calibration={"x": samples}, measurement=QUICK)
    assert isinstance(result.model, ir.Model) and result.model is not cnn_model
    assert _bytes(cnn_model) == before
    in_place = oc.run(cnn_model, QUANTIZE, calibration={"x": samples}, measurement=QUICK, copy=False)
    assert in_place.model is cnn_model and _bytes(cnn_model) == _bytes(result.model)


def test_a_path_gives_an_ir_model_written_to_output_and_the_file_stays(cnn_path, samples, tmp_path):
    before = cnn_path.read_bytes()
    result = oc.run(str(cnn_path), QUANTIZE, calibration={"x": samples}, measurement=QUICK, output=tmp_path / "int8.onnx")
    assert isinstance(result.model, ir.Model) and cnn_path.read_bytes() == before
    assert _bytes(io.load(tmp_path / "int8.onnx")) == _bytes(result.model)
    with pytest.raises(oc.UsageError, match=r"^refusing to overwrite the input model .*cnn.onnx; choose another output path$"):
        oc.run(cnn_path, ["fuse"], measurement=QUICK, output=cnn_path)


@pytest.mark.parametrize(("model", "calibration", "message"), [
    (None, object(), r"^calibration data must be a path \(.npz file, image folder\), a dict of arrays by input name, .*; got object$"),
    (42, None, r"^model must be a path, an onnx.ModelProto or an onnx_ir.Model; got int$"),
])
def test_what_run_cannot_take_is_a_one_line_usage_error(cnn_model, model, calibration, message):
    with pytest.raises(oc.UsageError, match=message) as raised:
        oc.run(cnn_model if model is None else model, ["fuse"], calibration=calibration, measurement=QUICK)
    assert "\n" not in str(raised.value)
