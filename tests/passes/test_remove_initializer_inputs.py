"""remove-initializer-inputs: weights listed as graph inputs become constants; outputs and real inputs stay."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import PruneChannels, RemoveInitializerInputs

# IR 3 requires every initializer to be a graph input too, as keep_initializers_as_inputs=True exports write
WEIGHTS_AS_INPUTS = """
<ir_version: 3, opset_import: ["" : 9]>
g (float[N, 4] x, float[4, 8] w1, float[8] b1, float[8, 2] w2) => (float[N, 2] y)
  <float[4, 8] w1 = {0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9, 1.0, -1.1, 1.2, 0.2, -0.3, 0.4, 0.5,
                     -0.6, 0.7, 0.8, -0.9, 1.0, 0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9, 1.0, -1.1},
   float[8] b1 = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8},
   float[8, 2] w2 = {0.5, -0.5, 0.4, -0.4, 0.3, -0.3, 0.2, -0.2, 0.1, -0.1, 0.6, -0.6, 0.7, -0.7, 0.8, -0.8}> {
    h = MatMul(x, w1)
    hb = Add(h, b1)
    r = Relu(hb)
    y = MatMul(r, w2)
}
"""

FEEDS = {"x": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)}


def test_weights_become_constants_and_the_outputs_stay(assert_exact_rewrite, rewrite_text):
    before, after, outcome = rewrite_text(RemoveInitializerInputs(), WEIGHTS_AS_INPUTS)
    assert outcome.modified
    assert [v.name for v in after.graph.inputs] == ["x"]
    assert sorted(after.graph.initializers) == ["b1", "w1", "w2"]
    assert after.ir_version == 4  # the first IR version that lets an initializer not be an input
    assert outcome.details["inputs_removed"] == ["w1", "b1", "w2"]
    assert outcome.notes == ["3 initializers are constants now, no longer graph inputs (e.g. 'w1'); IR version 3 -> 4, the first that allows it"]
    assert_exact_rewrite(before, after, feeds=FEEDS)


def test_a_model_without_them_is_left_as_it_is(rewrite_text):
    plain = WEIGHTS_AS_INPUTS.replace("ir_version: 3", "ir_version: 8").replace(", float[4, 8] w1, float[8] b1, float[8, 2] w2)", ")")
    _, after, outcome = rewrite_text(RemoveInitializerInputs(), plain)
    assert not outcome.modified and outcome.notes == ["no initializer is listed as a graph input"]
    assert after.ir_version == 8


def test_pruning_names_the_pass_and_prunes_after_it(rewrite_text):
    """Weights a caller could override are not pruned; the note says which pass makes them constants."""
    calibration = {"x": np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)}
    _, exposed, refused = rewrite_text(PruneChannels(ratio=0.5, accept_loss=True), WEIGHTS_AS_INPUTS)
    assert not refused.modified
    assert refused.notes[0].startswith("3 weights are also graph inputs (IR < 4, or exported with keep_initializers_as_inputs=True)")
    assert refused.notes[0].endswith("-p remove-initializer-inputs first makes them constants")
    assert refused.notes[1] == "nothing can be pruned: no channel runs through a stored floating-point weight"
    RemoveInitializerInputs()(exposed)
    pruned = PruneChannels(ratio=0.5, accept_loss=True).apply(exposed, calibration=ArrayReader(calibration))
    assert pruned.modified
    assert exposed.graph.initializers["w1"].const_value.shape == (4, 4)


def test_excluded_inputs_stay_inputs_and_an_unmatched_pattern_is_an_error(assert_exact_rewrite, rewrite_text):
    """A default a caller is meant to feed (here b1) stays an input; the others become constants."""
    before, after, outcome = rewrite_text(RemoveInitializerInputs(exclude=["b*"]), WEIGHTS_AS_INPUTS)
    assert [v.name for v in after.graph.inputs] == ["x", "b1"]
    assert outcome.notes[0] == "excluded 1 input: b1"
    assert outcome.details["inputs_removed"] == ["w1", "w2"]
    assert_exact_rewrite(before, after, feeds=FEEDS)
    fed = {**FEEDS, "b1": np.full(8, -10.0, np.float32)}  # still overridable: every hidden unit switched off
    np.testing.assert_array_equal(runtime.run(after, fed)["y"], np.zeros((3, 2), np.float32))
    with pytest.raises(UsageError, match="remove-initializer-inputs: exclude pattern 'bias' matches no name; "
                                         "the initializer-backed inputs are w1, b1, w2$"):
        rewrite_text(RemoveInitializerInputs(exclude=["bias"]), WEIGHTS_AS_INPUTS)
