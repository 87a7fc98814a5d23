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
