"""Every reference CNN exports, runs under ORT like in torch, and has the graph patterns it is for."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from onnxcompress import checks, fidelity, io, runtime
from onnxcompress.models import vision
from onnxcompress.models.export import export_onnx

PATTERNS = {
    "resnet18_layout": {"Add": 8, "MaxPool": 1, "GlobalAveragePool": 1, "Gemm": 1},
    "mobilenetv3_style": {"HardSwish": 1, "HardSigmoid": 1, "Mul": 1, "Concat": 1},
    "flatten_classifier": {"Flatten": 1, "Gemm": 1},
    "digits_resnet": {"Add": 3, "GlobalAveragePool": 1},
    "digits_student": {"Conv": 3, "GlobalAveragePool": 1},
    "mobilenetv3_mask_detector": {"Resize": 3, "HardSwish": 1, "Add": 3},
}
FACTORIES = {
    "resnet18_layout": (vision.resnet18_layout, (2, 3, 64, 64)),
    "mobilenetv3_style": (vision.mobilenetv3_style, (2, 3, 32, 32)),
    "flatten_classifier": (vision.flatten_classifier, (2, 1, 32, 32)),
    "digits_resnet": (vision.digits_resnet, (2, 1, 32, 32)),
    "digits_student": (vision.digits_student, (2, 1, 32, 32)),
    "mobilenetv3_mask_detector": (vision.mobilenetv3_mask_detector, (2, 3, 64, 64)),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def exported(request, tmp_path_factory):
    """(name, torch module, its ONNX model, example input) for each factory."""
    factory, shape = FACTORIES[request.param]
    module = factory()
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    return request.param, module, export_to_ir(module, x, tmp_path_factory.mktemp(request.param)), x


def export_to_ir(module, x, folder):
    """Export with the default (TorchScript) exporter and load the result."""
    return io.load(export_onnx(module, folder / "model.onnx", (x,), input_names=["input"], output_names=["logits"]))


def op_counts(model) -> Counter:
    return Counter(node.op_type for node in model.graph)


@pytest.mark.parametrize("optimization", ["disable", "all"])
def test_ort_matches_torch(exported, optimization):
    _, module, model, x = exported
    with torch.no_grad():
        expected = {"logits": module(x).numpy()}
    actual = runtime.run(model, {"input": x.numpy()}, optimization=optimization)
    result = fidelity.compare(expected, actual)
    assert result.exact, f"max abs err {result.max_abs_err:.3g}"


def test_exported_graph_is_valid_with_dynamic_batch(exported):
    _, _, model, _ = exported
    assert checks.graph_problems(model) == []
    assert not isinstance(model.graph.inputs[0].shape[0], int)


def test_graph_patterns(exported):
    name, _, model, _ = exported
    counts = op_counts(model)
    assert all(counts[op] >= n for op, n in PATTERNS[name].items()), counts
    if name == "mobilenetv3_style":
        groups = [node.attributes.get_int("group", 1) for node in model.graph if node.op_type == "Conv"]
        assert max(groups) > 1, "no depthwise conv"


def test_mean_pool_spelling_exports_reduce_mean_and_reshape(tmp_path):
    model = export_to_ir(vision.digits_resnet(pool="mean"), torch.rand(2, 1, 32, 32), tmp_path)
    counts = op_counts(model)
    assert counts["ReduceMean"] == 1 and counts["Reshape"] >= 1
    assert counts["GlobalAveragePool"] == 0 and counts["Flatten"] == 0


def test_factories_are_deterministic_by_seed():
    first, again, other = vision.digits_student(seed=3), vision.digits_student(seed=3), vision.digits_student(seed=4)
    for a, b, c in zip(first.parameters(), again.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, c) for a, c in zip(first.parameters(), other.parameters()))


def test_teacher_is_much_larger_than_student():
    teacher = sum(p.numel() for p in vision.digits_resnet().parameters())
    student = sum(p.numel() for p in vision.digits_student().parameters())
    assert teacher > 4 * student


def test_bad_options_are_refused():
    with pytest.raises(ValueError):
        vision.digits_student(pool="max")
    with pytest.raises(ValueError):
        vision.flatten_classifier(input_size=30)


def test_batch_statistics_make_an_untrained_nets_logits_depend_on_the_input():
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        flat = vision.mobilenetv3_style()(images)
        module = vision.with_batch_statistics(vision.mobilenetv3_style(), (3, 32, 32))
        varied = module(images)
    assert not module.training
    assert flat.std(dim=0).max() < 1e-3 < varied.std(dim=0).max()


def test_mobilenetv3_large_layout_has_the_backbones_size_and_blocks():
    module = vision.mobilenetv3_large_layout()
    assert 3.5e6 < sum(p.numel() for p in module.parameters()) < 4.5e6
    kinds = Counter(type(m).__name__ for m in module.modules())
    assert kinds["InvertedResidual"] == len(vision.MOBILENETV3_LARGE_BLOCKS) and kinds["SqueezeExcite"] == 8
    with torch.no_grad():
        assert module(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)


def test_mask_detector_gives_one_logit_per_pixel_at_stride_4():
    module = vision.mobilenetv3_mask_detector(in_channels=1)
    with torch.no_grad():
        assert module(torch.zeros(2, 1, 96, 64)).shape == (2, 1, 24, 16)
