"""Bisection names the first pass that breaks the tolerance, and stops there."""

from __future__ import annotations

from onnxcompress import io, spec
from onnxcompress.bisect import bisect_passes
from onnxcompress.passes import CompressionPass


def test_first_lossy_pass_is_named(cnn_model):
    passes = [spec.parse_pass("test-noop"), spec.parse_pass("test-scale:factor=0.5"), spec.parse_pass("test-noop")]
    outcome = bisect_passes(cnn_model, passes)
    assert [s.pass_name for s in outcome.steps] == ["test-noop", "test-scale"]
    assert outcome.first_failure.pass_name == "test-scale"
    assert not outcome.first_failure.result.outputs[0].passed


def test_all_passes_kept_within_tolerance(cnn_model):
    passes = [spec.parse_pass("test-noop"), spec.parse_pass("test-scale:factor=1.0")]
    outcome = bisect_passes(cnn_model, passes)
    assert outcome.first_failure is None and len(outcome.steps) == 2


def test_the_input_model_is_left_untouched(cnn_model):
    before = io.to_proto(cnn_model).SerializeToString()
    bisect_passes(cnn_model, [spec.parse_pass("test-scale:factor=0.5")])
    assert io.to_proto(cnn_model).SerializeToString() == before


def test_a_crashing_pass_is_the_first_failure(cnn_model):
    class Crash(CompressionPass):
        """Raise inside the pass."""

        name = "crash"

        def call(self, model):
            raise RuntimeError("boom\nsecond line")

    outcome = bisect_passes(cnn_model, [spec.parse_pass("test-noop"), Crash()])
    assert outcome.first_failure.pass_name == "crash"
    assert outcome.first_failure.error == "RuntimeError: boom"


def test_a_quantizing_recipe_bisects_with_calibration_and_names_the_step_a_gate_fails(int8_models):
    from onnxcompress import calibration, verify

    model = io.load(int8_models["ref"])
    reader = calibration.open_reader(int8_models["calibration"], model)
    feeds = io.load_arrays(int8_models["inputs"])
    passes = [spec.parse_pass("test-noop"), spec.parse_pass("quantize-static")]
    kept = bisect_passes(model, passes, feeds, gates=verify.Gates(min_cosine=0.99), calibration=reader)
    assert kept.first_failure is None and len(kept.steps) == 2
    assert "QuantizeLinear" not in str(io.to_proto(model))
    strict = bisect_passes(model, passes, feeds, gates=verify.Gates(min_snr_db=95), calibration=reader)
    assert [s.pass_name for s in strict.steps] == ["test-noop", "quantize-static"]
    (output,) = strict.first_failure.result.outputs
    assert output.missed_gates == [f"SNR {output.snr_db:.4g} dB < 95 dB"]


def test_a_quantizing_recipe_without_calibration_is_refused(cnn_model):
    import pytest

    from onnxcompress.errors import UsageError

    with pytest.raises(UsageError, match="calibration"):
        bisect_passes(cnn_model, [spec.parse_pass("quantize-static")])
