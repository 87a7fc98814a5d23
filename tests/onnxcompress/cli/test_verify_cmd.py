"""``onnxcompress verify`` end to end: exit codes, JUnit/JSON files, goldens, ranges, bisection."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import onnx_ir as ir
import pytest

from onnxcompress import io, verify
from onnxcompress.cli import main

from ..test_generation import decoder, first_steps, forget_cache


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of the CLI run in-process."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_exact_copy_exits_0(verify_models, capsys):
    code, out, err = run_cli(["verify", verify_models["ref"], verify_models["copy"], "--rtol", "0", "--atol", "0"], capsys)
    assert (code, err) == (0, "") and "verification passed" in out


def test_perturbed_weight_exits_1_and_junit_counts_it(verify_models, tmp_path, capsys):
    junit, report = tmp_path / "v.xml", tmp_path / "v.json"
    code, out, err = run_cli(["verify", verify_models["ref"], verify_models["perturbed"], "--junit", junit, "--json", report], capsys)
    assert code == 1 and err.startswith("error: verification failed (1 failure(s)); first: output 'y': max abs error")
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "1" and suite.get("tests") == "4"
    document = json.loads(report.read_text())
    assert document["passed"] is False and document["outputs"][0]["min_atol"] > verify.DEFAULT_ATOL


def test_wrong_input_channel_conv_exits_1(verify_models, tmp_path, capsys):
    junit = tmp_path / "v.xml"
    code, out, err = run_cli(["verify", verify_models["ref"], verify_models["wrong_channels"], "--junit", junit], capsys)
    assert code == 1
    assert err == (
        "error: verification failed (3 failure(s)); first: channel consistency rules: "
        "Conv node '(unnamed)': weight has 2 input channels x group 1 = 2, input has 3\n"
    )
    failures = [c for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert len(failures) == 3


def test_golden_workflow(verify_models, tmp_path, capsys):
    golden = tmp_path / "golden.npz"
    code, out, _ = run_cli(["verify", verify_models["ref"], "--save-golden", golden, "--batch", "4"], capsys)
    assert code == 0 and "wrote golden" in out
    inputs, outputs = verify.load_golden(golden)
    assert inputs["x"].shape == (4, 3, 8, 8) and outputs["y"].shape == (4, 10)
    assert run_cli(["verify", verify_models["copy"], "--golden", golden], capsys)[0] == 0
    assert run_cli(["verify", verify_models["perturbed"], "--golden", golden], capsys)[0] == 1


def test_inputs_file_is_used(verify_models, tmp_path, capsys):
    io.save_arrays(tmp_path / "in.npz", {"x": np.zeros((2, 3, 8, 8), np.float32)})
    golden = tmp_path / "g.npz"
    code, _, _ = run_cli(["verify", verify_models["ref"], verify_models["copy"], "--inputs", tmp_path / "in.npz", "--save-golden", golden], capsys)
    assert code == 0 and np.array_equal(verify.load_golden(golden)[0]["x"], np.zeros((2, 3, 8, 8), np.float32))


def test_ranges_file_bounds_synthetic_inputs(verify_models, tmp_path, capsys):
    from onnxcompress.calibration import Ranges, model_hash, save_ranges

    ref = io.load(verify_models["ref"])
    save_ranges(Ranges({"x": (0.2, 0.4)}, method="minmax", model_hash=model_hash(ref)), tmp_path / "r.json")
    golden = tmp_path / "g.npz"
    code, _, _ = run_cli(["verify", verify_models["ref"], "--ranges", tmp_path / "r.json", "--save-golden", golden], capsys)
    x = verify.load_golden(golden)[0]["x"]
    assert code == 0 and x.min() >= 0.2 and x.max() <= 0.4


def test_bisect_names_the_first_breaking_pass(cnn_path, tmp_path, capsys):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[[pass]]\nname = "test-noop"\n\n[[pass]]\nname = "test-scale"\nfactor = 0.5\n\n[[pass]]\nname = "test-noop"\n')
    junit = tmp_path / "b.xml"
    code, out, err = run_cli(["verify", cnn_path, "--bisect", recipe, "--junit", junit], capsys)
    assert code == 1 and "first failing pass: test-scale" in out
    assert err.splitlines()[-1].startswith("error: verification failed (2 failure(s)); first: pass test-scale: first pass after which")
    assert ET.parse(junit).getroot().get("failures") == "2"


def test_bisect_all_kept(cnn_path, tmp_path, capsys):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[[pass]]\nname = "test-noop"\n')
    code, out, _ = run_cli(["verify", cnn_path, "--bisect", recipe], capsys)
    assert code == 0 and "all 1 pass(es) keep the outputs" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{r}"], "give REFERENCE CANDIDATE, or one MODEL with --golden, --save-golden or --bisect"),
        (["{r}", "{r}", "{r}"], "verify takes one or two models, got 3"),
        (["{r}", "{r}", "--golden", "{g}"], "--golden compares ONE model with stored outputs; give one model"),
        (["{r}", "--golden", "{g}", "--inputs", "{g}"], "--golden already holds the inputs; do not combine it with --inputs or --save-golden"),
        (["{r}", "{r}", "--bisect", "{g}"], "--bisect RECIPE takes one model (the pipeline's input)"),
        (["{r}", "--golden", "{g}"], "{g}: no such file"),
        (["{r}", "{r}", "--inputs", "{bad}"], "inputs lack ['x']; the model takes ['x']"),
    ],
)
def test_unusable_arguments_exit_2(verify_models, tmp_path, capsys, argv, message):
    io.save_arrays(tmp_path / "bad.npz", {"z": np.zeros(2)})
    names = {"r": verify_models["ref"], "g": tmp_path / "missing.npz", "bad": tmp_path / "bad.npz"}
    code, _, err = run_cli(["verify", *[a.format(**names) for a in argv]], capsys)
    assert (code, err) == (2, f"error: {message.format(**names)}\n")


def test_an_int8_model_fails_on_tolerance_and_passes_on_fidelity_gates(int8_models, tmp_path, capsys):
    pair = ["verify", int8_models["ref"], int8_models["int8"], "--inputs", int8_models["inputs"]]
    code, _, err = run_cli(pair, capsys)
    assert code == 1 and "would pass with atol>=" in err
    report, junit = tmp_path / "v.json", tmp_path / "v.xml"
    code, out, err = run_cli([*pair, "--min-cosine", "0.99", "--min-topk-agreement", "0.9", "--json", report, "--junit", junit], capsys)
    assert (code, err) == (0, "")
    assert "verification passed (cosine >= 0.99, top-5 agreement >= 0.9; rtol=0.001 atol=0.0001 only reported)" in out
    assert "top-5" in out.splitlines()[4]  # the table's header shows the top-k agreement gated
    document = json.loads(report.read_text())
    assert document["passed"] and document["gates"]["min_cosine"] == 0.99 and document["tolerance_gates"] is False
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert properties["min_cosine"] == "0.99" and properties["min_topk_agreement"] == "0.9"


def test_a_gate_set_too_high_fails_naming_gate_value_and_threshold(int8_models, capsys):
    code, _, err = run_cli(["verify", int8_models["ref"], int8_models["int8"], "--inputs", int8_models["inputs"],
                            "--min-cosine", "0.999999"], capsys)
    assert code == 1
    assert re.fullmatch(r"error: verification failed \(1 failure\(s\)\); first: output 'y': cosine 0\.99\d+ < 0\.999999\n", err)


def test_rtol_given_with_a_gate_gates_too(int8_models, capsys):
    code, _, err = run_cli(["verify", int8_models["ref"], int8_models["int8"], "--inputs", int8_models["inputs"],
                            "--min-cosine", "0.99", "--rtol", "1e-3"], capsys)
    assert code == 1 and "would pass with atol>=" in err and "cosine" not in err


def test_gates_apply_to_a_golden(int8_models, tmp_path, capsys):
    golden = tmp_path / "g.npz"
    assert run_cli(["verify", int8_models["ref"], "--inputs", int8_models["inputs"], "--save-golden", golden], capsys)[0] == 0
    assert run_cli(["verify", int8_models["int8"], "--golden", golden], capsys)[0] == 1
    assert run_cli(["verify", int8_models["int8"], "--golden", golden, "--min-snr", "10"], capsys)[0] == 0


FEATURES = """
<ir_version: 8, opset_import: ["" : 17]>
features (float[N, 3, 4, 4] x) => (float[N, 3, 4, 4] y) {
  y = Relu(x)
}
"""


def test_the_topk_gate_on_a_non_classifier_output_is_not_applicable(tmp_path, capsys):
    import onnx_ir as ir

    model = io.save(ir.from_onnx_text(FEATURES), tmp_path / "features.onnx")
    code, out, _ = run_cli(["verify", model, model, "--min-topk-agreement", "0.9"], capsys)
    assert code == 0
    assert "note output 'y': top-5 agreement gate not applicable (not [batch, classes] float scores)" in out


QUANTIZE_RECIPE = '[[pass]]\nname = "test-noop"\n\n[[pass]]\nname = "quantize-static"\n'


def test_bisect_with_calibration_runs_a_recipe_that_quantizes(int8_models, tmp_path, capsys):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(QUANTIZE_RECIPE)
    bisect = ["verify", int8_models["ref"], "--bisect", recipe, "--calibration", int8_models["calibration"], "--batch", "8"]
    code, out, _ = run_cli([*bisect, "--min-cosine", "0.99"], capsys)
    assert code == 0 and "all 2 pass(es) keep the outputs within cosine >= 0.99" in out
    code, out, err = run_cli([*bisect, "--min-snr", "90"], capsys)
    assert code == 1 and "first failing pass: quantize-static" in out
    assert re.search(r"output 'y': SNR [\d.]+ dB < 90 dB", out)
    assert err.splitlines()[-1].startswith("error: verification failed (2 failure(s)); first: pass quantize-static")


def test_bisect_of_a_quantizing_recipe_without_calibration_exits_2(int8_models, tmp_path, capsys):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(QUANTIZE_RECIPE)
    code, _, err = run_cli(["verify", int8_models["ref"], "--bisect", recipe], capsys)
    assert code == 2 and "calibration" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--min-cosine", "1.5", "min_cosine (--min-cosine) must be in [-1, 1], got 1.5"),
        ("--min-topk-agreement", "2", "min_topk_agreement (--min-topk-agreement) must be in [0, 1], got 2.0"),
        ("--min-snr", "nan", "min_snr_db (--min-snr) must be a number, got nan"),
        ("--top-k", "0", "top_k (--top-k) must be a whole number of at least 1, got 0"),
    ],
)
def test_gates_out_of_range_exit_2_with_one_line(verify_models, capsys, option, value, message):
    code, _, err = run_cli(["verify", verify_models["ref"], verify_models["copy"], option, value], capsys)
    assert (code, err) == (2, f"error: {message}\n")


def test_calibration_without_bisect_exits_2(int8_models, capsys):
    code, _, err = run_cli(["verify", int8_models["ref"], int8_models["int8"], "--calibration", int8_models["calibration"]], capsys)
    assert (code, err) == (2, "error: --calibration feeds the passes of --bisect RECIPE; use --inputs for the data to compare on\n")


def test_two_cached_decoders_are_compared_on_the_token_after_the_given_first_step_too(tmp_path, capsys):
    io.save(decoder(), tmp_path / "ref.onnx")
    io.save(forget_cache(decoder()), tmp_path / "cand.onnx")
    io.save_arrays(tmp_path / "first.npz", first_steps(1))
    code, _, err = run_cli(["verify", tmp_path / "ref.onnx", tmp_path / "cand.onnx", "--inputs", tmp_path / "first.npz"], capsys)
    assert code == 1 and err.startswith("error: verification failed (1 failure(s)); first: output 'logits (next token)': max abs error")
    code, out, _ = run_cli(["verify", tmp_path / "ref.onnx", tmp_path / "ref.onnx", "--inputs", tmp_path / "first.npz"], capsys)
    assert code == 0 and "logits (next token)" in out and "not checked" not in out
    fixed = decoder()  # a fixed token count: no next token can be fed, and verify says what it left out
    fixed.graph.inputs[0].shape, fixed.graph.inputs[2].shape = ir.Shape([1, 5]), ir.Shape([1, 5])
    io.save(fixed, tmp_path / "fixed.onnx")
    code, out, _ = run_cli(["verify", tmp_path / "fixed.onnx", tmp_path / "fixed.onnx", "--inputs", tmp_path / "first.npz"], capsys)
    assert code == 0 and "the next token is not checked" in out and "(next token)" not in out


def test_a_golden_of_a_cached_decoder_holds_its_next_token_and_judges_it(tmp_path, capsys):
    # a golden held the first step only: a candidate that forgets its cache reproduced it
    io.save(decoder(), tmp_path / "ref.onnx")
    io.save(forget_cache(decoder()), tmp_path / "cand.onnx")
    io.save_arrays(tmp_path / "first.npz", first_steps(1))
    golden = tmp_path / "golden.npz"
    code, out, _ = run_cli(["verify", tmp_path / "ref.onnx", "--inputs", tmp_path / "first.npz", "--save-golden", golden], capsys)
    assert code == 0 and "and the run (next token)" in out
    assert {key for key in np.load(golden) if "(next token)" in key} >= {"input (next token):past_key_values.0.key", "output (next token):logits"}
    assert run_cli(["verify", tmp_path / "ref.onnx", "--golden", golden], capsys)[0] == 0
    code, _, err = run_cli(["verify", tmp_path / "cand.onnx", "--golden", golden], capsys)
    assert code == 1 and "first: output 'logits (next token)'" in err
    from onnxcompress import testing

    with pytest.raises(AssertionError, match=r"logits \(next token\)"):
        testing.assert_matches_golden(tmp_path / "cand.onnx", golden)
