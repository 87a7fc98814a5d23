"""Activation importances (|W|·‖X‖, mean |a|, APoZ) against NumPy on a Conv→Relu→Conv graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes.pruning import PruneChannels, importance
from onnxcompress.passes.pruning.dependencies import build_channel_graph, infer_shapes

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2, 4, 4] x) => (float[N, 3, 4, 4] y) {
    h0 = Conv(x, w1, b1)
    h = Relu(h0)
    y = Conv(h, w2, b2)
}
"""
DEAD = 2  # the hidden channel that is always zero after the Relu


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((4, 2, 1, 1)).astype(np.float32)
    b1 = np.array([0.3, -0.2, -1.0, 0.0], np.float32)
    w1[DEAD] = 0.0  # pre-activation is the bias -1: Relu always gives 0
    w1[3] *= 0.01  # small but never zero: ranks differently under mean |a| and APoZ
    b1[3] = 0.1
    return {
        "w1": w1,
        "b1": b1,
        "w2": rng.standard_normal((3, 4, 1, 1)).astype(np.float32),
        "b2": rng.standard_normal(3).astype(np.float32),
    }


@pytest.fixture
def model() -> ir.Model:
    proto = onnx.parser.parse_model(TEXT)
    for name, array in _weights().items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
    return ir.serde.deserialize_model(proto)


@pytest.fixture
def samples() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((20, 2, 4, 4)).astype(np.float32)


def _hidden(x: np.ndarray) -> np.ndarray:
    """Relu(Conv1x1(x)) in NumPy, channels first moved to axis 0 and flattened: [4, N·H·W]."""
    w = _weights()
    pre = np.einsum("oc,nchw->onhw", w["w1"][:, :, 0, 0].astype(np.float64), x) + w["b1"][:, None, None, None]
    return np.maximum(pre, 0).reshape(4, -1)


def _reference(kind: str, x: np.ndarray) -> np.ndarray:
    h = _hidden(x)
    if kind == "mean_abs":
        return np.abs(h).mean(axis=1)
    if kind == "apoz":
        return 1.0 - (h == 0).mean(axis=1)
    w2_norms = np.sqrt((_weights()["w2"][:, :, 0, 0].astype(np.float64) ** 2).sum(axis=0))
    return np.sqrt((h**2).mean(axis=1)) * w2_norms


def _hidden_scores(model: ir.Model, reader, kind: str) -> np.ndarray:
    """Scores of the 4 hidden-channel units, in channel order."""
    work = io.clone(model)
    infer_shapes(work)
    graph = build_channel_graph(work)
    hidden = next(n for n in work.graph if n.op_type == "Relu").outputs[0]
    slot = graph.slot(hidden, 1)
    channel_of = {slot.offset + c: c for c in range(slot.size)}
    by_channel = {channel_of[e]: u for u in graph.units() for e in u.elements.tolist() if e in channel_of}
    units = [by_channel[c] for c in sorted(by_channel)]
    assert len(units) == 4
    scores = {"activation": importance.activation_scores, "mean_abs": importance.mean_abs_scores, "apoz": importance.apoz_scores}
    return scores[kind](graph, units, work, reader)


@pytest.mark.parametrize("kind", ["activation", "mean_abs", "apoz"])
def test_scores_match_numpy(model, samples, kind):
    got = _hidden_scores(model, ArrayReader({"x": samples}, batch_size=8), kind)
    np.testing.assert_allclose(got, _reference(kind, samples), rtol=1e-5, atol=1e-7)


def test_mean_abs_and_apoz_rank_differently(samples):
    """The weak-but-always-on channel is second-least important by mean |a| and most important by APoZ."""
    mean_abs, apoz = _reference("mean_abs", samples), _reference("apoz", samples)
    assert np.argsort(mean_abs)[1] == 3
    assert np.argmax(apoz) == 3


def test_always_zero_channel_has_apoz_one(model, samples):
    work = io.clone(model)
    infer_shapes(work)
    stats = importance.channel_statistics(build_channel_graph(work), work, ArrayReader({"x": samples}, batch_size=8))
    apoz = stats["h"].apoz()
    assert apoz[DEAD] == 1.0
    assert np.all(np.delete(apoz, DEAD) < 1.0)


@pytest.mark.parametrize("kind", ["activation", "mean_abs", "apoz"])
def test_always_zero_channel_is_pruned_first_exactly(model, samples, kind, check_pruned):
    pruned = io.clone(model)
    assert PruneChannels(ratio=0.25, importance=kind).apply(pruned, calibration=ArrayReader({"x": samples}, batch_size=8)).modified
    kept = pruned.graph.initializers["w1"].const_value.numpy()
    np.testing.assert_array_equal(kept, np.delete(_weights()["w1"], DEAD, axis=0))
    got = check_pruned(model, pruned, {"x": samples[:4]})
    np.testing.assert_allclose(got["y"], runtime.run(model, {"x": samples[:4]}, optimization="disable")["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["mean_abs", "apoz"])
def test_pass_removes_lowest_reference_scores(model, samples, kind, check_pruned):
    pruned = io.clone(model)
    assert PruneChannels(ratio=0.5, importance=kind, accept_loss=True).apply(pruned, calibration=ArrayReader({"x": samples}, batch_size=8)).modified
    expected_kept = np.sort(np.argsort(_reference(kind, samples), kind="stable")[2:])
    kept = pruned.graph.initializers["b1"].const_value.numpy()
    np.testing.assert_array_equal(kept, _weights()["b1"][expected_kept])
    check_pruned(model, pruned, {"x": samples[:4]})


def test_unknown_importance_lists_the_valid_ones():
    with pytest.raises(UsageError, match="magnitude, activation, mean_abs, apoz, taylor"):
        PruneChannels(importance="apoz2")


def test_new_importances_need_calibration(model):
    with pytest.raises(UsageError, match="calibration"):
        PruneChannels(ratio=0.5, importance="apoz")(io.clone(model))
