"""PruneChannels end to end on exported CNNs and MiniLM: valid, runs, shapes kept, params drop."""

from __future__ import annotations

import os

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.errors import UsageError
from onnxcompress.passes.pruning import PruneChannels
from onnxcompress.stats import parameter_count


def _export(tmp_path_factory, factory, name: str, channels: int, dynamo: bool = False):
    import torch

    from onnxcompress.models import export

    path = tmp_path_factory.mktemp("pruning") / f"{name}.onnx"
    example = (torch.randn(1, channels, 32, 32),)
    export.export_onnx(factory(), path, example, input_names=["x"], output_names=["y"], dynamo=dynamo)
    return io.load(path)


@pytest.fixture(scope="module")
def cnns(tmp_path_factory):
    """ResNet-style (both exporter spellings), MobileNetV3-style and Flatten+Gemm nets, 32×32 inputs."""
    from onnxcompress.models import vision

    return {
        "resnet": _export(tmp_path_factory, lambda: vision.resnet18_layout(10), "resnet", 3),
        "resnet-dynamo": _export(tmp_path_factory, lambda: vision.resnet18_layout(10), "resnet_d", 3, dynamo=True),
        "mobilenet": _export(tmp_path_factory, lambda: vision.mobilenetv3_style(10), "mobilenet", 3),
        "flatten": _export(tmp_path_factory, lambda: vision.flatten_classifier(10), "flatten", 1),
    }


@pytest.mark.parametrize("name", ["resnet", "resnet-dynamo", "mobilenet", "flatten"])
def test_cnn_pruned_half_runs_and_shrinks(cnns, name, check_pruned):
    original = cnns[name]
    model = io.clone(original)
    feeds = runtime.synthetic_inputs(model, batch=2)
    run = PruneChannels(ratio=0.5, round_to=4)(model)
    assert run.modified
    check_pruned(original, model, feeds)
    assert parameter_count(model) < 0.6 * parameter_count(original)
    assert run.details["macs_after"] < 0.6 * run.details["macs_before"]
    for node in model.graph:
        if node.op_type == "Conv":
            channels = node.inputs[1].const_value.shape[0]  # filters kept
            assert channels % 4 == 0 or channels == 3 or node.outputs[0].is_graph_output()


def test_residual_groups_reported(cnns):
    groups = PruneChannels(ratio=0.5)(io.clone(cnns["resnet"])).details["groups"]
    removed = [g for g in groups if g["removed"]]
    frozen = [g for g in groups if g["frozen"]]
    # 8 block-internal groups + 4 residual stages, each halved; stem input and logits frozen
    assert len(removed) == 12
    assert all(g["removed"] == g["kept"] for g in removed)
    assert {g["reason"].split(":")[0] for g in frozen} == {"graph input/output 'x'", "graph input/output 'y'"}


def test_global_scope_keeps_total_ratio(cnns):
    groups = PruneChannels(ratio=0.5, scope="global")(io.clone(cnns["mobilenet"])).details["groups"]
    removable = sum(g["removed"] + g["kept"] - g["frozen"] for g in groups)
    assert sum(g["removed"] for g in groups) <= removable // 2
    assert len({g["removed"] / (g["removed"] + g["kept"]) for g in groups if g["removed"]}) > 1


def test_ratio_zero_is_identity(cnns):
    model = io.clone(cnns["flatten"])
    before = io.to_proto(model).SerializeToString()
    assert not PruneChannels(ratio=0.0)(model).modified
    assert io.to_proto(model).SerializeToString() == before


def test_dead_only_removes_zeroed_channels_exactly(cnns, assert_exact_rewrite):
    original = io.clone(cnns["resnet"])
    reader_conv = next(
        n for n in original.graph if n.op_type == "Conv" and n.inputs[0].producer() is not None and n.inputs[0].producer().op_type == "Relu"
    )
    weight = reader_conv.inputs[1]
    array = weight.const_value.numpy().copy()
    array[:, [1, 5, 9]] = 0.0
    weight.const_value = ir.tensor(array, name=weight.name)
    model = io.clone(original)
    run = PruneChannels(dead_only=True)(model)
    assert run.modified
    assert sum(g["removed"] for g in run.details["groups"]) == 3
    assert_exact_rewrite(original, model, runtime.synthetic_inputs(original, batch=2))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"ratio": 1.0}, "ratio"), ({"ratio": -0.1}, "ratio"), ({"importance": "gradient"}, "importance"), ({"scope": "all"}, "scope")],
)
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        PruneChannels(**options)


def test_calibration_must_match_inputs(cnns):
    from onnxcompress.calibration.readers import ArrayReader

    with pytest.raises(UsageError):
        PruneChannels(importance="activation").apply(io.clone(cnns["resnet"]), calibration=ArrayReader({"image": np.zeros((4, 3, 32, 32), np.float32)}))


def test_activation_importance_prunes_with_calibration(cnns, check_pruned):
    from onnxcompress.calibration.readers import ArrayReader

    original = cnns["flatten"]
    model = io.clone(original)
    reader = ArrayReader({"x": np.random.default_rng(0).random((16, 1, 32, 32), dtype=np.float32)}, batch_size=8)
    assert PruneChannels(ratio=0.5, importance="activation").apply(model, calibration=reader).modified
    check_pruned(original, model, runtime.synthetic_inputs(original, batch=2))


@pytest.fixture(scope="module")
def minilm2(tmp_path_factory):
    """MiniLM cut to 2 layers (the heads/FFN structure of all 6, a third of the cost)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from onnxcompress.models import minilm

    return io.load(minilm.export_minilm(tmp_path_factory.mktemp("minilm2") / "minilm2.onnx", num_layers=2))


@pytest.mark.slow
def test_minilm_heads_and_ffn_removed(minilm2, minilm_feeds, check_pruned):
    model = io.clone(minilm2)
    run = PruneChannels(ratio=0.5)(model)
    assert run.modified
    got = check_pruned(minilm2, model, minilm_feeds)
    kinds = {(g["kind"], g["removed"], g["kept"]) for g in run.details["groups"] if g["removed"]}
    assert kinds == {("heads", 6, 6), ("neurons", 768, 768)}
    expected = runtime.run(minilm2, minilm_feeds)
    cosine = np.sum(got["sentence_embedding"] * expected["sentence_embedding"], axis=1)
    assert np.all(cosine > 0.5)
    assert run.details["macs_after"] < 0.6 * run.details["macs_before"]


@pytest.mark.slow
def test_minilm_heads_switch_off_keeps_attention(minilm2, minilm_feeds, check_pruned):
    model = io.clone(minilm2)
    run = PruneChannels(ratio=0.5, heads=False)(model)
    assert run.modified
    check_pruned(minilm2, model, minilm_feeds)
    assert {g["kind"] for g in run.details["groups"] if g["removed"]} == {"neurons"}
