"""``quantize-static`` from the CLI on a model exported with a fixed batch of 1, calibrated with 16 samples."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest

from onnxcompress import io
from onnxcompress.cli import main
from onnxcompress.passes.quantization.support import guard

from .conftest import conv_model_proto


@pytest.mark.parametrize("spec", ["quantize-static", "quantize-static:max_drop=0.5"])  # the fallback judges a feed too
def test_quantize_static_calibrates_a_fixed_batch_of_one_with_16_samples(tmp_path, capsys, spec):
    model, data, output = tmp_path / "fixed.onnx", tmp_path / "calib.npz", tmp_path / "int8.onnx"
    onnx.save(conv_model_proto(1), model)
    np.savez(data, x=np.random.default_rng(7).standard_normal((16, 3, 8, 8)).astype(np.float32))
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    code = main(["run", str(model), "-o", str(output), "-p", spec, "--calibration", str(data), "--no-bench"])
    assert code == 0, capsys.readouterr().err
    quantized = io.load(output)
    assert guard.quantized_nodes(quantized)
    assert [list(v.shape) for v in quantized.graph.inputs] == [[1, 3, 8, 8]]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
