"""verify's Python API: structure checks, per-output numbers, goldens, in-distribution inputs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime, verify
from onnxcompress.cli import main
from onnxcompress.errors import UsageError

from .test_generation import decoder, first_steps, forget_cache


def test_exact_copy_passes_every_check_and_output(verify_models):
    result = verify.verify_models(io.load(verify_models["ref"]), io.load(verify_models["copy"]))
    assert result.passed
    assert [c.name for c in result.checks] == [
        "onnx checker and strict shape inference",
        "channel consistency rules",
        "ORT session (ORT_DISABLE_ALL)",
    ]
    (output,) = result.outputs
    assert output.max_abs_err == 0.0 and output.snr_db == float("inf") and output.top1_agreement == 1.0


def test_the_candidate_is_serialized_once_and_loaded_in_ort_once(verify_models, monkeypatch):
    reference, candidate = io.load(verify_models["ref"]), io.load(verify_models["copy"])
    feeds = runtime.synthetic_inputs(reference)
    expected = runtime.run(reference, feeds, optimization="disable")
    serialized, sessions = [], []
    to_proto, session = io.to_proto, runtime.session
    monkeypatch.setattr(io, "to_proto", lambda model: serialized.append(model) or to_proto(model))
    monkeypatch.setattr(runtime, "session", lambda model, **options: sessions.append(options) or session(model, **options))
    assert verify.verify_against(candidate, feeds, expected, threads=2).passed
    assert serialized == [candidate] and sessions == [{"threads": 2, "optimization": "disable"}]


def test_a_float16_copy_is_fed_float16_inputs_and_compared_with_its_float32_original(cnn_model):
    """onnxruntime's own float16 converter (weights, inputs and outputs): the float32 inputs are rounded for it."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = ir.serde.deserialize_model(convert_float_to_float16(io.to_proto(cnn_model), keep_io_types=False))
    result = verify.verify_models(cnn_model, half, rtol=0.05, atol=0.05)
    assert result.passed, result.failures()
    assert result.outputs[0].cosine > 0.999 and result.outputs[0].top1_agreement == 1.0


def test_perturbed_weight_fails_and_reports_the_tolerance_that_would_pass(verify_models):
    ref, cand = io.load(verify_models["ref"]), io.load(verify_models["perturbed"])
    result = verify.verify_models(ref, cand)
    (output,) = result.outputs
    assert not result.passed and all(c.passed for c in result.checks)
    assert "would pass with atol>=" in output.detail and f"index {list(output.worst_index)}" in output.detail
    rtol, atol = verify.DEFAULT_RTOL, verify.DEFAULT_ATOL
    assert verify.verify_models(ref, cand, rtol=rtol, atol=output.min_atol * 1.0001).passed
    assert verify.verify_models(ref, cand, rtol=output.min_rtol * 1.0001, atol=atol).passed
    assert not verify.verify_models(ref, cand, rtol=rtol, atol=output.min_atol * 0.99).passed


def test_wrong_input_channels_fail_the_channel_rule_and_the_run(verify_models):
    result = verify.verify_models(io.load(verify_models["ref"]), io.load(verify_models["wrong_channels"]))
    failed = [c.name for c in result.checks if not c.passed]
    assert failed == ["channel consistency rules", "run (ORT_DISABLE_ALL)"]
    assert result.outputs[0].detail == "missing, expected shape (1, 10)"


@pytest.mark.parametrize("level", ["disable", "all"])
def test_ort_loads_the_wrong_channel_conv_and_fails_only_when_running_it(verify_models, level):
    """Records ORT's behaviour (1.32): the session loads at every level; only running it fails."""
    model = io.load(verify_models["wrong_channels"])
    session = runtime.session(model, optimization=level)
    with pytest.raises(UsageError, match="Input channels C is not equal to kernel channels"):
        runtime.run(session, runtime.synthetic_inputs(model))


def test_compare_output_metrics_on_known_arrays():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)
    cand = ref.copy()
    cand[1, 0] = 3.5
    result = verify.compare_output("y", ref, cand, rtol=0.0, atol=0.1)
    assert not result.passed and result.worst_index == (1, 0)
    assert result.max_abs_err == pytest.approx(0.5) and result.min_atol == pytest.approx(0.5)
    assert result.min_rtol == pytest.approx((0.5 - 0.1) / 3.0)
    assert result.snr_db == pytest.approx(10 * np.log10(28 / 0.25))
    assert result.top1_agreement == 1.0 and result.topk_agreement == 1.0


def test_nan_matches_nan_but_not_a_number():
    ref = np.array([np.nan, 1.0], np.float32)
    assert verify.compare_output("y", ref, ref.copy(), rtol=0, atol=0).passed
    result = verify.compare_output("y", ref, np.array([0.0, 1.0], np.float32), rtol=1, atol=1)
    assert not result.passed and result.worst_index == (0,)


def test_non_numeric_outputs_compare_exactly():
    ref = np.array([True, False])
    assert verify.compare_output("m", ref, ref.copy(), rtol=0, atol=0).passed
    assert not verify.compare_output("m", ref, ~ref, rtol=1, atol=1).passed


def test_golden_round_trip(tmp_path, verify_models):
    model = io.load(verify_models["ref"])
    feeds = runtime.synthetic_inputs(model, batch=3)
    outputs = runtime.run(model, feeds, optimization="disable")
    verify.save_golden(tmp_path / "g.npz", feeds, outputs)
    inputs, expected = verify.load_golden(tmp_path / "g.npz")
    assert inputs.keys() == feeds.keys() and np.array_equal(expected["y"], outputs["y"])
    assert verify.verify_against(io.load(verify_models["copy"]), inputs, expected).passed
    assert not verify.verify_against(io.load(verify_models["perturbed"]), inputs, expected).passed


def test_an_npz_that_is_not_a_golden_is_refused(tmp_path):
    io.save_arrays(tmp_path / "plain.npz", {"x": np.zeros(3)})
    with pytest.raises(UsageError, match="not a golden file"):
        verify.load_golden(tmp_path / "plain.npz")


TWO_OUTPUTS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y, float[N, 4] z) {
  y = Relu(x)
  z = Neg(x)
}
"""


@pytest.fixture
def two_outputs(tmp_path):
    """A model with outputs y and z, and a golden of it that stores only y."""
    model = io.load(io.save(ir.from_onnx_text(TWO_OUTPUTS), tmp_path / "two.onnx"))
    feeds = runtime.synthetic_inputs(model, batch=2)
    outputs = runtime.run(model, feeds)
    verify.save_golden(tmp_path / "only_y.npz", feeds, {"y": outputs["y"]})
    return model, tmp_path / "only_y.npz"


def test_a_golden_lacking_an_output_fails_verification(two_outputs):
    model, golden = two_outputs
    inputs, expected = verify.load_golden(golden, model)
    result = verify.verify_against(model, inputs, expected)
    assert not result.passed
    assert result.failures() == ["output 'z': no expected values (missing from the golden file or the reference outputs)"]
    assert [o.name for o in result.outputs if o.passed] == ["y"]


def test_a_golden_lacking_an_output_fails_the_cli_with_exit_1(two_outputs, capsys):
    model, golden = two_outputs
    assert main(["verify", model.meta[io.SOURCE_KEY], "--golden", str(golden)]) == 1
    err = capsys.readouterr().err
    assert err == "error: verification failed (1 failure(s)); first: output 'z': no expected values (missing from the golden file or the reference outputs)\n"


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"input:x": np.zeros((2, 4), np.float32), "output:y": np.zeros((2, 4)), "output:w": np.zeros(2)},
         "{g}: outputs ['w'] are not outputs of the model; it has ['y', 'z']"),
        ({"input:x": np.zeros((2, 4), np.float32), "input:u": np.zeros(2), "output:y": np.zeros((2, 4))},
         "inputs ['u'] are not inputs of the model; it takes ['x']"),
        ({"input:x": np.zeros((2, 2, 4), np.float32), "output:y": np.zeros((2, 4))},
         "{g}: input 'x' has shape (2, 2, 4) but the model expects rank 2"),
    ],
)
def test_a_golden_for_another_model_is_refused_before_it_is_inflated(two_outputs, tmp_path, monkeypatch, arrays, message):
    model, _ = two_outputs
    golden = io.save_arrays(tmp_path / "other.npz", arrays)
    monkeypatch.setattr(io, "load_arrays", lambda *a: pytest.fail("inflated before the names were checked"))
    with pytest.raises(UsageError) as raised:
        verify.load_golden(golden, model)
    assert str(raised.value) == message.format(g=golden)


def test_feed_names_must_match_the_model(verify_models):
    model = io.load(verify_models["ref"])
    with pytest.raises(UsageError, match=r"inputs lack \['x'\]"):
        verify.check_feed_names(model, {})
    with pytest.raises(UsageError, match=r"inputs \['z'\] are not inputs of the model"):
        verify.check_feed_names(model, {"x": np.zeros((1, 3, 8, 8), np.float32), "z": np.zeros(1)})


def test_synthesized_inputs_stay_inside_calibrated_ranges(verify_models):
    model = io.load(verify_models["ref"])
    feeds = verify.synthesize_inputs(model, {"x": (0.25, 0.5)}, batch=4, seed=3)
    assert feeds["x"].shape == (4, 3, 8, 8) and feeds["x"].dtype == np.float32
    assert feeds["x"].min() >= 0.25 and feeds["x"].max() <= 0.5
    assert verify.synthesize_inputs(model, None, seed=3)["x"].min() < 0.0


def test_json_form_has_no_non_finite_numbers(verify_models):
    import json

    result = verify.verify_models(io.load(verify_models["ref"]), io.load(verify_models["wrong_channels"]))
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert document["passed"] is False and document["outputs"][0]["max_abs_err"] == "inf"


def _int8(int8_models) -> tuple[ir.Model, ir.Model, dict[str, np.ndarray]]:
    """The reference CNN, its INT8 form and held-out inputs."""
    return io.load(int8_models["ref"]), io.load(int8_models["int8"]), io.load_arrays(int8_models["inputs"])


def test_an_int8_model_fails_on_tolerance_and_passes_on_fidelity_gates(int8_models):
    ref, int8, feeds = _int8(int8_models)
    assert not verify.verify_models(ref, int8, feeds).passed
    gates = verify.Gates(min_cosine=0.99, min_topk_agreement=0.9)
    result = verify.verify_models(ref, int8, feeds, gates=gates)
    (output,) = result.outputs
    assert result.passed and output.missed_gates == [] and output.detail == ""
    assert output.cosine >= 0.99 and output.topk_agreement >= 0.9 and output.min_atol > verify.DEFAULT_ATOL
    assert result.tolerance_gates is False and "only reported" in result.criteria()


def test_tolerances_given_with_gates_gate_too(int8_models):
    ref, int8, feeds = _int8(int8_models)
    gates = verify.Gates(min_cosine=0.99)
    result = verify.verify_models(ref, int8, feeds, atol=verify.DEFAULT_ATOL, gates=gates)
    (output,) = result.outputs
    assert not result.passed and result.tolerance_gates and output.missed_gates == []
    assert "would pass with atol>=" in output.detail


def test_a_gate_set_too_high_names_the_gate_its_value_and_threshold(int8_models):
    ref, int8, feeds = _int8(int8_models)
    gates = verify.Gates(min_cosine=0.9999999, min_snr_db=80, min_topk_agreement=0.5)
    result = verify.verify_models(ref, int8, feeds, gates=gates)
    (output,) = result.outputs
    assert not result.passed
    assert output.missed_gates == [f"cosine {output.cosine:.4g} < 0.9999999", f"SNR {output.snr_db:.4g} dB < 80 dB"]
    assert result.failures() == [f"output 'y': {output.missed_gates[0]}; {output.missed_gates[1]}"]


def test_top_k_sets_the_agreement_gated():
    ref = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]], np.float32)
    cand = np.array([[3.0, 1.0, 2.0, 0.0], [0.0, 1.0, 3.0, 2.0]], np.float32)  # row 0 keeps its arg-max, row 1 does not
    top1 = verify.compare_output("y", ref, cand, gates=verify.Gates(min_topk_agreement=0.75, top_k=1))
    top2 = verify.compare_output("y", ref, cand, gates=verify.Gates(min_topk_agreement=0.75, top_k=2))
    assert (top1.topk_agreement, top1.missed_gates) == (0.5, ["top-1 agreement 0.5 < 0.75"])
    assert top2.topk_agreement == 0.75 and top2.passed


def test_a_label_output_is_gated_on_its_share_unchanged():
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6], np.int64)
    changed = labels.copy()
    changed[5] = 8  # one label of eight: 9 read as 8 counts as much as 9 read as 0
    result = verify.compare_output("label", labels, changed, gates=verify.Gates(min_cosine=0.9))
    assert result.cosine == result.top1_agreement == 0.875 and not result.passed
    assert result.detail == "cosine 0.875 < 0.9"


def test_the_topk_gate_on_a_non_classifier_output_is_not_applicable():
    ref = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    result = verify.compare_output("features", ref, ref + 0.5, gates=verify.Gates(min_topk_agreement=0.99))
    assert result.passed and result.topk_agreement is None and result.missed_gates == []
    assert result.detail == "top-5 agreement gate not applicable (not [batch, classes] float scores)"
    failed = verify.compare_output("features", ref, -ref, gates=verify.Gates(min_cosine=0.5, min_topk_agreement=0.99))
    assert not failed.passed and failed.detail == "cosine -1 < 0.5; top-5 agreement gate not applicable (not [batch, classes] float scores)"


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        ({"min_cosine": 1.5}, "min_cosine (--min-cosine) must be in [-1, 1], got 1.5"),
        ({"min_topk_agreement": -0.1}, "min_topk_agreement (--min-topk-agreement) must be in [0, 1], got -0.1"),
        ({"min_snr_db": float("nan")}, "min_snr_db (--min-snr) must be a number, got nan"),
        ({"top_k": 0}, "top_k (--top-k) must be a whole number of at least 1, got 0"),
    ],
)
def test_gates_out_of_range_are_refused(gates, message):
    with pytest.raises(UsageError) as raised:
        verify.Gates(**gates)
    assert str(raised.value) == message


def test_json_form_carries_the_gates_and_what_each_output_missed(int8_models):
    import json

    ref, int8, feeds = _int8(int8_models)
    result = verify.verify_models(ref, int8, feeds, gates=verify.Gates(min_snr_db=90))
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert document["gates"] == {"min_cosine": None, "min_snr_db": 90, "min_topk_agreement": None, "top_k": verify.TOP_K}
    assert document["tolerance_gates"] is False and document["passed"] is False
    assert document["outputs"][0]["missed_gates"][0].endswith("dB < 90 dB")


def test_a_cached_decoder_is_verified_on_the_token_after_its_first_step():
    feeds = first_steps(1)
    forgetful = verify.verify_models(decoder(), forget_cache(decoder()), feeds)
    assert not forgetful.passed
    assert [o.name for o in forgetful.outputs if not o.passed] == ["logits (next token)"]  # its cache is still right
    assert [o.name for o in forgetful.outputs] == ["logits", "present.0.key", "logits (next token)", "present.0.key (next token)"]
    assert verify.verify_models(decoder(), decoder(), feeds).passed
