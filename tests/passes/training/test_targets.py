"""What recovery matches: outputs scaled per element by the teacher's spread, padding left out."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxcompress.passes.training import targets  # noqa: E402


def test_each_element_is_scaled_by_its_spread_so_quiet_class_scores_count_like_loud_boxes():
    rng = np.random.default_rng(0)
    boxes, scores = 100.0 * rng.standard_normal((64, 4)), 0.1 * rng.standard_normal((64, 80))
    teacher = np.concatenate([boxes, scores], axis=1)  # a detector's [samples, 4 + classes] row
    scales = targets.output_scales({"y": teacher})
    scaled = targets.joined({"y": torch.from_numpy(teacher)}, scales, {}).numpy()
    np.testing.assert_allclose(scaled.std(axis=0), np.ones(84), rtol=1e-4)


def test_padding_positions_are_left_out():
    hidden = torch.ones((2, 3, 4))
    feeds = {"attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]])}
    out = targets.joined({"h": hidden}, {"h": 1.0}, feeds).reshape(2, 3, 4)
    assert out.sum().item() == 3 * 4  # three real positions of four features each
    assert out[0, 2].abs().sum().item() == 0 and out[1, 1:].abs().sum().item() == 0


def test_the_residual_stream_is_the_normalisations_both_graphs_name_alike():
    from ..pruning.conftest import text_model
    from .test_graph_module import ENCODER, ENCODER_SHAPES

    teacher = text_model(ENCODER, ENCODER_SHAPES)
    assert targets.residual_stream(teacher, teacher) == ["ln"]
    renamed = text_model(ENCODER.replace("ln", "normed"), ENCODER_SHAPES)
    assert targets.residual_stream(teacher, renamed) == []
    assert [v.name for v in targets.with_outputs(teacher, ["ln"]).graph.outputs] == ["y", "ln"]
    assert [v.name for v in teacher.graph.outputs] == ["y"]  # a copy: the teacher is not changed


def test_hidden_states_together_weigh_what_the_outputs_weigh():
    outputs = {"y": np.ones((8, 4)), "h1": np.ones((8, 10, 16)), "h2": np.ones((8, 10, 16))}
    weights = targets.hidden_weights(outputs, ["h1", "h2"])
    assert weights["y"] == 1.0
    # each hidden element's squared error is divided by weight**2: 160 elements / 80 = 2 output elements' worth each
    assert all(160 / weights[h] ** 2 == pytest.approx(4 / 2) for h in ("h1", "h2"))
    heavier = targets.hidden_weights(outputs, ["h1", "h2"], weight=4.0)
    assert all(160 / heavier[h] ** 2 == pytest.approx(4 * 4 / 2) for h in ("h1", "h2")) and heavier["y"] == 1.0


def test_a_ctc_models_time_first_logits_are_matched_along_their_sample_axis():
    import onnx.parser
    import onnx_ir as ir

    text = """<ir_version: 8, opset_import: ["" : 17]>
    ctc (float[batch, 6] x) => (float[5, batch, 6] logits) {
      u = Unsqueeze(x, zero)
      logits = Expand(u, shape)
    }"""
    model = ir.from_proto(onnx.parser.parse_model(text))
    model.graph.initializers["zero"] = ir.Value(name="zero", const_value=ir.tensor(np.array([0], np.int64)))
    model.graph.initializers["shape"] = ir.Value(name="shape", const_value=ir.tensor(np.array([5, 1, 6], np.int64)))
    for name in ("zero", "shape"):
        model.graph.initializers[name].const_value.name = name
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)  # 5 samples: as many as time steps
    outputs, axes = targets.trained_outputs(model, 5, {"x": x})
    assert axes == {"logits": 1} and outputs["logits"].shape == (5, 5, 6)
    np.testing.assert_array_equal(outputs["logits"][:, 0], x)  # sample i's row at every time step is x[i]
    flat = targets.joined({"logits": torch.from_numpy(np.moveaxis(outputs["logits"], 0, 1))}, {"logits": 1.0}, {}, axes)
    assert flat.shape == (5, 30) and torch.equal(flat[2, :6], torch.from_numpy(x[2]))
