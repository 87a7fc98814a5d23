"""PruneChannels end to end on exported CNNs and MiniLM: valid, runs, shapes kept, params drop."""

from __future__ import annotations

import os

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration.readers import ArrayReader
from onnxcompress.errors import CheckFailed, UsageError
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
    run = PruneChannels(ratio=0.5, round_to=4, accept_loss=True)(model)
    assert run.modified
    check_pruned(original, model, feeds)
    assert parameter_count(model) < 0.6 * parameter_count(original)
    assert run.details["macs_after"] < 0.6 * run.details["macs_before"]
    for node in model.graph:
        if node.op_type == "Conv":
            channels = node.inputs[1].const_value.shape[0]  # filters kept
            assert channels % 4 == 0 or channels == 3 or node.outputs[0].is_graph_output()


def with_weights_in_constant_nodes(model: ir.Model) -> ir.Model:
    """``model`` with every initializer moved into a Constant node, as TorchScript exports store weights."""
    import onnx

    proto = io.to_proto(model)
    constants = [onnx.helper.make_node("Constant", [], [init.name], value=init) for init in proto.graph.initializer]
    nodes = [*constants, *proto.graph.node]
    del proto.graph.initializer[:]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return ir.serde.deserialize_model(proto)


def test_weights_held_in_constant_nodes_are_pruned(cnns, check_pruned):
    original = with_weights_in_constant_nodes(cnns["resnet"])
    assert not original.graph.initializers
    model = io.clone(original)
    run = PruneChannels(ratio=0.5, accept_loss=True)(model)
    assert run.modified and run.notes[0].startswith("removed ")
    check_pruned(original, model, runtime.synthetic_inputs(model, batch=2))
    assert parameter_count(model) < 0.6 * parameter_count(cnns["resnet"])


def test_residual_groups_reported(cnns):
    groups = PruneChannels(ratio=0.5, accept_loss=True)(io.clone(cnns["resnet"])).details["groups"]
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
    [({"ratio": 1.0}, "ratio"), ({"ratio": -0.1}, "ratio"), ({"importance": "gradient"}, "importance"), ({"scope": "all"}, "scope"),
     ({"normalise": False}, "normalise")],  # raw scores only matter when groups are ranked together (scope=global)
)
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        PruneChannels(**options)


def test_calibration_must_match_inputs(cnns):
    with pytest.raises(UsageError):
        PruneChannels(importance="activation").apply(io.clone(cnns["resnet"]), calibration=ArrayReader({"image": np.zeros((4, 3, 32, 32), np.float32)}))


def test_activation_importance_prunes_with_calibration(cnns, check_pruned):
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
    run = PruneChannels(ratio=0.5, accept_loss=True)(model)
    assert run.modified
    got = check_pruned(minilm2, model, minilm_feeds)
    kinds = {(g["kind"], g["removed"], g["kept"]) for g in run.details["groups"] if g["removed"]}
    assert kinds == {("heads", 6, 6), ("neurons", 768, 768)}
    expected = runtime.run(minilm2, minilm_feeds)
    cosine = np.sum(got["sentence_embedding"] * expected["sentence_embedding"], axis=1)
    assert np.all(cosine > 0.5)
    assert run.details["macs_after"] < 0.6 * run.details["macs_before"]


@pytest.mark.slow
def test_minilm_global_scope_removes_half_of_the_heads_and_half_of_the_neurons(minilm2, minilm_feeds, check_pruned):
    model = io.clone(minilm2)
    run = PruneChannels(ratio=0.5, scope="global", normalise=False, importance="activation", accept_loss=True).apply(
        model, calibration=ArrayReader(minilm_feeds))
    check_pruned(minilm2, model, minilm_feeds)
    removed = {kind: [g["removed"] for g in run.details["groups"] if g["kind"] == kind and g["removed"]] for kind in ("heads", "neurons")}
    assert sum(removed["heads"]) == 12 and sum(removed["neurons"]) == 1536  # half of each kind over both layers
    assert run.details["macs_after"] < 0.6 * run.details["macs_before"]


@pytest.mark.slow
def test_minilm_heads_switch_off_keeps_attention(minilm2, minilm_feeds, check_pruned):
    model = io.clone(minilm2)
    run = PruneChannels(ratio=0.5, heads=False, accept_loss=True)(model)
    assert run.modified
    check_pruned(minilm2, model, minilm_feeds)
    assert {g["kind"] for g in run.details["groups"] if g["removed"]} == {"neurons"}


# Filters 0-3 of w1 are near zero but carry a bias of 1, so after the Relu they are a constant 1 that w2 reads:
# magnitude pruning at 50 % removes them, which shifts every output channel unless recovery folds them back.
CONSTANT_CHANNELS_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4, 6, 6] x) => (float[N, 6, 6, 6] y)
<float[8, 4, 1, 1] w1 = {0.0}, float[8] b1 = {0.0}, float[6, 8, 1, 1] w2 = {0.0}, float[6] b2 = {0.0}> {
  a = Conv (x, w1, b1)
  r = Relu (a)
  y = Conv (r, w2, b2)
}
"""


def constant_channels(low_bias: float = 1.0) -> ir.Model:
    """``CONSTANT_CHANNELS_TEXT`` with its weights set; the near-zero filters' bias is ``low_bias`` (0: they are dead)."""
    rng = np.random.default_rng(3)
    w1 = np.concatenate([rng.normal(scale=1e-3, size=(4, 4)), rng.normal(scale=2.0, size=(4, 4))]).reshape(8, 4, 1, 1)
    b1 = np.array([low_bias] * 4 + [0.0] * 4)
    shifts = np.repeat(np.linspace(-1.0, 1.0, 6)[:, None], 4, axis=1)  # a different shift per output channel
    w2 = np.concatenate([shifts, rng.normal(scale=0.3, size=(6, 4))], axis=1).reshape(6, 8, 1, 1)
    model = ir.from_onnx_text(CONSTANT_CHANNELS_TEXT)
    for name, array in {"w1": w1, "b1": b1, "w2": w2, "b2": np.zeros(6)}.items():
        model.graph.initializers[name].const_value = ir.tensor(array.astype(np.float32), name=name)
    return model


def constant_channels_data(count: int = 32) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(4).normal(size=(count, 4, 6, 6)).astype(np.float32)}


def test_a_collapse_fails_the_pass_and_leaves_the_model_alone():
    model = constant_channels()
    before = io.to_proto(model).SerializeToString()
    with pytest.raises(CheckFailed) as failed:
        PruneChannels(ratio=0.5).apply(model, calibration=ArrayReader(constant_channels_data()))
    message = str(failed.value)
    assert message.startswith("prune-channels: slice error ") and "> 0.5 at 'y'" in message and "\n" not in message
    assert "on 8 held-out calibration samples, without recovery" in message and message.endswith("accept_loss=true writes the model anyway")
    assert io.to_proto(model).SerializeToString() == before


def test_the_budget_is_judged_after_recovery():
    model = constant_channels()
    run = PruneChannels(ratio=0.5, bias_fold=True).apply(model, calibration=ArrayReader(constant_channels_data()))
    budget = run.details["budget"]
    assert run.modified and budget["within_budget"] and not budget["accepted_loss"]
    assert budget["judged_on"] == "8 held-out calibration samples" and budget["values"]["slice error"] < 0.05
    assert any(note.startswith("fidelity budget held on 8 held-out calibration samples: slice error") for note in run.notes)
    assert model.graph.initializers["w1"].const_value.shape[0] == 4


def test_accept_loss_keeps_the_pruned_model_and_says_the_budget_broke():
    model = constant_channels()
    run = PruneChannels(ratio=0.5, accept_loss=True)(model)
    budget = run.details["budget"]
    assert run.modified and budget["accepted_loss"] and budget["values"]["slice error"] > 0.5
    assert budget["judged_on"].startswith("synthetic inputs") and "cannot judge the model's task" in budget["judged_on"]
    assert any(note.startswith("budget broken, model kept as accept_loss=true asks: prune-channels: slice error") for note in run.notes)


def test_with_labels_the_budget_is_the_top1_drop():
    from onnxcompress.pipeline import LabelledData

    model = constant_channels()
    feeds = constant_channels_data(16)
    labels = runtime.run(model, feeds)["y"].reshape(16, -1).argmax(axis=1)
    run = PruneChannels(ratio=0.5, max_drop=1.0).apply(model, labelled=LabelledData(feeds, labels))
    budget = run.details["budget"]
    assert budget["budget"] == {"accuracy drop": 1.0} and budget["judged_on"] == "16 labelled samples"
    assert 0 < budget["values"]["accuracy drop"] <= 1.0 and budget["within_budget"]
    with pytest.raises(CheckFailed, match=r"^prune-channels: accuracy drop .* > 0.01 on 16 labelled samples"):
        PruneChannels(ratio=0.5).apply(constant_channels(), labelled=LabelledData(feeds, labels))


@pytest.mark.parametrize(("options", "message"), [({"max_error": 0.0}, "max_error must be > 0"), ({"max_drop": 1.5}, r"max_drop must be in \[0, 1\]")])
def test_bad_budget_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        PruneChannels(**options)


def test_cli_exits_1_and_writes_nothing_over_budget(tmp_path, capsys):
    from onnxcompress.cli import main

    path, data, out = tmp_path / "m.onnx", tmp_path / "calibration.npz", tmp_path / "out.onnx"
    io.save(constant_channels(), path)
    np.savez(data, **constant_channels_data())
    assert main(["run", str(path), "-o", str(out), "-p", "prune-channels", "--calibration", str(data), "--no-bench"]) == 1
    err = capsys.readouterr().err.strip()
    assert not out.exists() and "prune-channels: slice error" in err and "accept_loss=true" in err and "\n" not in err
    options = "prune-channels:reconstruct=true"
    assert main(["run", str(path), "-o", str(out), "-p", options, "--calibration", str(data), "--no-bench"]) == 0 and out.is_file()


def test_no_tensor_loses_every_channel_so_a_pruned_model_prunes_again():
    """Half of a Concat's 14 channels was all 6 of one Conv's filters (a zero-filter Conv), and pruning again crashed."""
    from .conftest import text_model
    from .test_taylor import CNN, SHAPES

    model = text_model(CNN, SHAPES)
    for _ in range(3):
        assert PruneChannels(ratio=0.5, accept_loss=True)(model).modified
        assert all(0 not in v.const_value.shape for v in model.graph.initializers.values())
    assert model.graph.initializers["w2"].const_value.shape[0] >= 1
    runtime.run(model, runtime.synthetic_inputs(model, batch=2))
