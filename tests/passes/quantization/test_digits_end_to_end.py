"""The digits CNN end to end: trained, exported, statically quantized; accuracy within half a point."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import checks
from onnxcompress.calibration import ArrayReader
from onnxcompress.passes import QuantizeStatic
from onnxcompress.pipeline import LabelledData

EPOCHS = 3
WIDTH = 8  # half the demo teacher's width: same layout, trains in a third of the time


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """The digits teacher briefly trained and exported, with the data split."""
    import torch

    from onnxcompress import io
    from onnxcompress.models import digits, export, training, vision

    split = digits.load_split()
    module = vision.digits_resnet(width=WIDTH)
    training.fit(module, split.x_train, split.y_train, epochs=EPOCHS, lr=3e-3, batch_size=64, seed=0)
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    export.export_onnx(module, path, (torch.zeros(1, 1, 32, 32),), input_names=["x"], output_names=["logits"])
    return io.load(path), split


@pytest.mark.slow
def test_static_int8_keeps_digits_accuracy_within_half_a_point(digits_model) -> None:
    model, split = digits_model
    test = LabelledData({"x": split.x_test}, split.y_test)
    before = test.accuracy(model, 2)
    assert before > 0.8
    run = QuantizeStatic().apply(model, calibration=ArrayReader({"x": split.x_train[:232]}))  # 200 calibrated on, 32 held out

    assert checks.graph_problems(model) == []
    assert run.details["unfused_qdq"]["count"] == 0
    assert run.details["calibration"]["peak_rss_mb"] < 1024
    assert before - test.accuracy(model, 2) <= 0.005
    assert np.isfinite(run.details["calibration"]["seconds"])
