"""pytest helpers: pass on an exact copy, fail with the worst output and element index named."""

from __future__ import annotations

from pathlib import Path

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


def test_an_int8_model_passes_on_gates_and_fails_naming_the_gate(int8_models):
    inputs = io.load_arrays(int8_models["inputs"])
    with pytest.raises(AssertionError, match="would pass with atol>="):
        testing.assert_models_close(int8_models["ref"], int8_models["int8"], inputs=inputs)
    result = testing.assert_models_close(int8_models["ref"], int8_models["int8"], inputs=inputs,
                                         gates=testing.Gates(min_cosine=0.99, min_topk_agreement=0.9))
    assert result.passed and not result.tolerance_gates
    with pytest.raises(AssertionError, match=r"^worst output 'y': SNR [\d.]+ dB < 95 dB$"):
        testing.assert_models_close(int8_models["ref"], int8_models["int8"], inputs=inputs, gates=testing.Gates(min_snr_db=95))


def test_outputs_close_and_golden_take_gates(tmp_path, int8_models):
    inputs = io.load_arrays(int8_models["inputs"])
    expected, actual = testing.run_model(int8_models["ref"], inputs), testing.run_model(int8_models["int8"], inputs)
    testing.assert_outputs_close(expected, actual, gates=testing.Gates(min_cosine=0.99))
    with pytest.raises(AssertionError, match=r"cosine [\d.]+ < 0\.9999999"):
        testing.assert_outputs_close(expected, actual, gates=testing.Gates(min_cosine=0.9999999))
    verify.save_golden(tmp_path / "g.npz", inputs, expected)
    testing.assert_matches_golden(int8_models["int8"], tmp_path / "g.npz", gates=testing.Gates(min_topk_agreement=0.9))


ASSERTIONS = [testing.assert_models_close, testing.assert_outputs_close, testing.assert_matches_golden, testing.assert_valid_graph]


@pytest.mark.parametrize("helper", ASSERTIONS, ids=lambda f: f.__name__)
def test_every_assertion_hides_its_own_frame(helper):
    assert "__tracebackhide__" in helper.__code__.co_varnames


def test_a_failing_assertion_shows_no_frame_of_the_helpers(verify_models):
    with pytest.raises(AssertionError) as raised:
        testing.assert_models_close(verify_models["ref"], verify_models["perturbed"])
    helpers = Path(testing.__file__)
    every = [Path(entry.frame.code.path) for entry in raised.traceback]
    shown = [Path(entry.frame.code.path) for entry in raised.traceback.filter(raised)]
    assert every.count(helpers) == 2 and shown == [Path(__file__)]
