"""Cutting a text batch to its longest real sequence: the same joined outputs as the padded batch, on MiniLM."""

from __future__ import annotations

import numpy as np
import onnx.parser
import onnx_ir as ir
import pytest

torch = pytest.importorskip("torch")

from onnxcompress import io, runtime  # noqa: E402
from onnxcompress.passes.training import targets, trimming  # noqa: E402
from onnxcompress.passes.training.graph_module import GraphModule  # noqa: E402

MASK_ECHO = """<ir_version: 8, opset_import: ["" : 18]>
echo (int64[N,{length}] attention_mask, float[N,3] x) => (int64[N,{length}] y, float[N,3] z) {{
  y = Identity(attention_mask)
  z = Identity(x)
}}"""


def echo(length: str) -> ir.Model:
    return ir.serde.deserialize_model(onnx.parser.parse_model(MASK_ECHO.format(length=length)))


def echo_samples() -> dict[str, np.ndarray]:
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], np.int64)
    return {"attention_mask": mask, "x": np.ones((3, 3), np.float32)}


def test_the_sequence_inputs_and_outputs_are_found_by_running_one_position_shorter():
    model = echo("T")
    trim = trimming.detect(model, lambda feeds: runtime.run(model, feeds), echo_samples(), {})
    assert trim.feeds == {"attention_mask"}
    assert dict(trim.outputs) == {"y": (1,)}  # z does not run along the sequence
    assert trim.lengths(echo_samples()).tolist() == [2, 1, 3]
    feeds = {name: torch.from_numpy(a) for name, a in echo_samples().items()}
    cut, full = trim.cut(feeds)
    assert full == 4 and cut["attention_mask"].shape == (3, 3) and cut["x"].shape == (3, 3)
    padded = trim.evaluate(lambda f: {"y": f["attention_mask"], "z": f["x"]}, feeds)
    assert torch.equal(padded["y"], feeds["attention_mask"])  # the cut positions come back as the zeros they were


@pytest.mark.parametrize("model, samples", [(echo("4"), echo_samples()),  # a declared fixed length is never cut
                                            (echo("T"), {**echo_samples(), "attention_mask": np.ones((3, 4), np.int64)})],  # no padding
                         ids=["fixed-length", "unpadded"])
def test_no_trimming_where_it_cannot_apply(model, samples):
    trim = trimming.detect(model, lambda feeds: runtime.run(model, feeds), samples, {})
    assert not trim.feeds and trim.lengths(samples) is None


# Declared dynamic, yet runs at 4 positions only: the length is fixed in a Reshape's constant (PyTorch's legacy export
# of nn.MultiheadAttention fixes its key length so).
FIXED_IN_A_CONSTANT = """<ir_version: 8, opset_import: ["" : 18]>
fixed (int64[N,T] attention_mask) => (float[N,4] y) {
  shape = Constant<value = int64[2] {-1, 4}>()
  m = Cast<to = 1>(attention_mask)
  y = Reshape(m, shape)
}"""


def test_a_length_fixed_inside_the_graph_is_not_cut():
    model = ir.serde.deserialize_model(onnx.parser.parse_model(FIXED_IN_A_CONSTANT))
    samples = {"attention_mask": echo_samples()["attention_mask"]}
    trim = trimming.detect(model, lambda feeds: runtime.run(model, feeds), samples, {})
    assert not trim.feeds


def test_minilm_cut_to_its_longest_sentence_matches_the_padded_batch_in_teacher_and_student(minilm_onnx, minilm_feeds):
    model = io.load(minilm_onnx)
    teacher = targets.with_outputs(model, targets.residual_stream(model, model)[:2])
    trim = trimming.detect(teacher, lambda feeds: runtime.run(teacher, feeds), minilm_feeds, {})
    assert trim.feeds == set(minilm_feeds)
    assert {name for name, axes in trim.outputs.items() if axes == (1,)} >= set(targets.residual_stream(model, model)[:2])
    assert "sentence_embedding" not in trim.outputs  # mean-pooled: it does not run along the sequence
    short = np.argsort(minilm_feeds["attention_mask"].sum(axis=1))[:4]  # the four shortest sentences: at most 20 of 32 tokens
    feeds = {name: torch.from_numpy(array[short]) for name, array in minilm_feeds.items()}
    assert trim.cut(feeds)[0]["input_ids"].shape[1] < 32
    outputs, axes = targets.trained_outputs(teacher, 8, minilm_feeds)
    scales = targets.output_scales(outputs)
    for make in (lambda t: targets.Teacher(teacher, scales, {}, axes, t), lambda t: targets.Student(GraphModule(model), scales, {}, axes, t)):
        with torch.no_grad():
            padded, cut = make(trimming.Trimming())(**feeds), make(trim)(**feeds)
        assert cut.shape == padded.shape
        np.testing.assert_allclose(cut.numpy(), padded.numpy(), atol=1e-3)
