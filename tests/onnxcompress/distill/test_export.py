"""The distilled student exported to ONNX matches PyTorch, and hands off to a Pipeline in one call."""

import numpy as np
import onnx
import torch
from torch import nn

from onnxcompress import checks, io, runtime
from onnxcompress.distill import distill
from onnxcompress.distill.export import export, to_pipeline
from onnxcompress.pipeline import Measurement


def _cnn(width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4),
    )


def _trained_student():
    x = np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)
    teacher = _cnn(16, seed=1).eval()
    result = distill(teacher, _cnn(4, seed=2), (x, None), epochs=3, lr=1e-2)
    assert result.history[-1].train_loss < result.history[0].train_loss
    return result.student, x


def test_exported_student_matches_pytorch_at_any_batch(tmp_path):
    student, x = _trained_student()
    path = export(student, tmp_path / "s.onnx", (torch.from_numpy(x[:1]),), input_names=["image"], output_names=["logits"])
    proto = onnx.load(path)
    assert proto.opset_import[0].version >= 17
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logits"]
    with torch.no_grad():
        expected = student(torch.from_numpy(x[:5])).numpy()
    for level in ("disable", "all"):
        got = runtime.run(io.load(path), {"image": x[:5]}, optimization=level)["logits"]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert checks.graph_problems(io.load(path)) == []


def test_to_pipeline_exports_and_runs_the_passes(tmp_path):
    student, x = _trained_student()
    measurement = Measurement(benchmark=False, feeds={"image": x[:4]})
    result = to_pipeline(
        student, [], example_inputs=(torch.from_numpy(x[:1]),), input_names=["image"], output_names=["logits"],
        path=tmp_path / "student.onnx", measurement=measurement,
    )
    assert (tmp_path / "student.onnx").exists()
    assert [s.pass_name for s in result.report.steps] == ["input"]
    assert result.report.steps[0].params == (4 * 9 + 4) + (4 * 4 + 4)  # conv (BN folded in on export) + linear
    assert result.report.steps[0].fidelity.worst().exact
