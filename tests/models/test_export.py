"""export_onnx: both exporter spellings, dynamic axes, BatchNorm kept on request, clean output folder."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from onnxcompress import checks, fidelity, io, runtime
from onnxcompress.models import vision
from onnxcompress.models.export import export_onnx

NAMES = {"input_names": ["input"], "output_names": ["logits"]}


@pytest.fixture(scope="module")
def student():
    return vision.digits_student()


def example(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(batch))


def ops(model) -> Counter:
    return Counter(node.op_type for node in model.graph)


def assert_runs_like_torch(module, model, batch: int) -> None:
    x = example(batch)
    with torch.no_grad():
        expected = {"logits": module(x).numpy()}
    for level in ("disable", "all"):
        result = fidelity.compare(expected, runtime.run(model, {"input": x.numpy()}, optimization=level))
        assert result.exact, f"ORT {level}: max abs err {result.max_abs_err:.3g}"


def test_torchscript_export_has_dynamic_batch(student, tmp_path):
    path = export_onnx(student, tmp_path / "s.onnx", (example(),), **NAMES)
    model = io.load(path)
    assert model.opset_imports[""] == 17
    assert_runs_like_torch(student, model, batch=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.onnx"]


def test_fixed_batch_when_not_dynamic(student, tmp_path):
    model = io.load(export_onnx(student, tmp_path / "s.onnx", (example(),), dynamic_batch=False, **NAMES))
    assert model.graph.inputs[0].shape[0] == 2
    assert model.graph.outputs[0].shape[0] == 2


def test_extra_dynamic_axes_are_named(tmp_path):
    module = torch.nn.Flatten()
    axes = {"input": {1: "width"}}
    path = export_onnx(module, tmp_path / "f.onnx", (torch.rand(2, 3),), dynamic_axes=axes, **NAMES)
    dims = io.load(path).graph.inputs[0].shape
    assert [str(d) for d in dims] == ["batch", "width"]
    out = runtime.run(io.load(path), {"input": np.ones((4, 7), np.float32)})["logits"]
    assert out.shape == (4, 7)


def test_dynamo_spelling_exports_reduce_mean_and_runs(student, tmp_path):
    model = io.load(export_onnx(student, tmp_path / "d.onnx", (example(),), dynamo=True, **NAMES))
    counts = ops(model)
    assert counts["ReduceMean"] >= 1 and counts["Reshape"] >= 1 and counts["GlobalAveragePool"] == 0
    assert model.opset_imports[""] >= 18
    assert checks.graph_problems(model) == []
    assert_runs_like_torch(student, model, batch=3)


def test_batchnorm_folded_by_default_and_kept_on_request(tmp_path):
    teacher = vision.digits_resnet(width=4)
    folded = io.load(export_onnx(teacher, tmp_path / "a.onnx", (example(),), **NAMES))
    kept = io.load(export_onnx(teacher, tmp_path / "b.onnx", (example(),), keep_batchnorm=True, **NAMES))
    assert ops(folded)["BatchNormalization"] == 0
    assert ops(kept)["BatchNormalization"] == ops(kept)["Conv"]
    assert checks.graph_problems(kept) == []
    assert_runs_like_torch(teacher, kept, batch=2)
