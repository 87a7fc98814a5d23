"""pytest helpers: pass on an exact copy, fail with the worst output and element index named."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import io, runtime, testing, verify


def test_exact_copy_passes(verify_models):
    result = testing.assert_models_close(verify_models["ref"], verify_models["copy"], rtol=0, atol=0)
    assert result.passed


def test_perturbed_weight_names_the_worst_output_and_element(verify_models):
    with pytest.raises(AssertionError, match=r"worst output 'y': max abs error [\d.]+ at index \[0, \d\]"):
        testing.assert_models_close(verify_models["ref"], verify_models["perturbed"])


def test_given_inputs_are_used(verify_models):
    model = io.load(verify_models["ref"])
    inputs = {"x": np.zeros((2, 3, 8, 8), np.float32)}
    result = testing.assert_models_close(model, io.load(verify_models["copy"]), inputs=inputs)
    assert result.outputs[0].worst_index[0] in (0, 1)


def test_wrong_channel_conv_fails_on_structure(verify_models):
    with pytest.raises(AssertionError, match=r"^channel consistency rules: Conv node .*2 input channels"):
        testing.assert_valid_graph(verify_models["wrong_channels"])
    testing.assert_valid_graph(verify_models["copy"])


def test_outputs_close_names_the_element():
    expected = {"a": np.zeros((2, 2)), "b": np.array([1.0, 2.0, 3.0])}
    testing.assert_outputs_close(expected, {k: v + 1e-6 for k, v in expected.items()})
    with pytest.raises(AssertionError, match=r"worst output 'b': max abs error 0.5 at index \[2\]"):
        testing.assert_outputs_close(expected, {"a": expected["a"], "b": np.array([1.0, 2.0, 3.5])})


def test_golden_assertion(tmp_path, verify_models):
    feeds = runtime.synthetic_inputs(io.load(verify_models["ref"]))
    verify.save_golden(tmp_path / "g.npz", feeds, testing.run_model(verify_models["ref"], feeds))
    testing.assert_matches_golden(verify_models["copy"], tmp_path / "g.npz", rtol=0, atol=0)
    with pytest.raises(AssertionError, match="worst output 'y'"):
        testing.assert_matches_golden(verify_models["perturbed"], tmp_path / "g.npz")
