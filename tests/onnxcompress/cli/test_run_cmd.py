"""``onnxcompress run``: passes and recipes, the written model and report, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from onnxcompress import io, runtime
from onnxcompress.cli import main
from onnxcompress.passes import CompressionPass


def test_run_writes_model_and_full_report(mlp_path, tmp_path, capsys):
    out, report = tmp_path / "out.onnx", tmp_path / "report"
    code = main(["run", str(mlp_path), "-o", str(out), "-p", "test-noop", "-p", "test-scale:factor=0.5", "--report", str(report), "--threads", "1"])
    assert code == 0
    assert sorted(p.name for p in report.iterdir()) == ["report.json", "report.md", "report.png"]
    steps = json.loads((report / "report.json").read_text())["steps"]
    assert [s["pass"] for s in steps] == ["input", "test-noop", "test-scale"]
    assert steps[2]["latency_ms"]["median_ms"] > 0
    provenance = json.loads((report / "report.json").read_text())["provenance"]
    assert provenance["command"] == f"onnxcompress run {mlp_path} -o {out} -p test-noop -p test-scale:factor=0.5 --report {report} --threads 1"
    assert provenance["input_sha256"] == hashlib.sha256(mlp_path.read_bytes()).hexdigest()
    assert (report / "report.md").read_text().splitlines()[2] == f"- command: {provenance['command']}"
    feeds = runtime.synthetic_inputs(io.load(mlp_path))
    np.testing.assert_allclose(runtime.run(io.load(out), feeds)["y"], runtime.run(io.load(mlp_path), feeds)["y"] * 0.25, rtol=1e-4, atol=1e-5)
    assert "wrote" in capsys.readouterr().out


def test_recipe_runs_before_pass_options(mlp_path, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[pass]]\nname = "test-scale"\nfactor = 2.0\n')
    report = tmp_path / "rep"
    args = ["run", str(mlp_path), "-o", str(tmp_path / "o.onnx"), "--recipe", str(recipe), "-p", "test-noop", "--no-bench", "--report", str(report)]
    assert main(args) == 0
    steps = json.loads((report / "report.json").read_text())["steps"]
    assert [s["pass"] for s in steps] == ["input", "test-scale", "test-noop"] and steps[1]["latency_ms"] is None


def test_recipe_naming_an_unknown_pass_exits_2(mlp_path, tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[pass]]\nname = "squash"\n')
    out = tmp_path / "o.onnx"
    assert main(["run", str(mlp_path), "-o", str(out), "--recipe", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown pass 'squash'" in err and "\n" not in err and not out.exists()


def test_unwritable_report_folder_exits_2(mlp_path, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(mlp_path), "-o", str(tmp_path / "o.onnx"), "-p", "test-noop", "--no-bench", "--report", str(blocker / "rep")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot write the report" in err and "\n" not in err


def test_exact_pass_changing_outputs_exits_1_and_keeps_the_input(mlp_path, tmp_path, capsys):
    before = mlp_path.read_bytes(), os.stat(mlp_path).st_mtime_ns
    assert main(["run", str(mlp_path), "-o", str(tmp_path / "o.onnx"), "-p", "test-wrongly-exact", "--no-bench"]) == 1
    assert "test-wrongly-exact" in capsys.readouterr().err
    assert (mlp_path.read_bytes(), os.stat(mlp_path).st_mtime_ns) == before


def test_no_passes_and_output_over_input_exit_2(mlp_path, capsys):
    assert main(["run", str(mlp_path), "-o", str(mlp_path.parent / "o.onnx")]) == 2
    assert main(["run", str(mlp_path), "-o", str(mlp_path), "-p", "test-noop"]) == 2
    err = capsys.readouterr().err
    assert "no passes given" in err and "refusing to overwrite" in err


def test_transformer_int8_recipe_runs_from_the_cli(mlp_path, tmp_path):
    calibration = tmp_path / "calib.npz"
    np.savez(calibration, x=np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32))
    out, report = tmp_path / "int8.onnx", tmp_path / "report"
    args = ["run", str(mlp_path), "-o", str(out), "-p", "split-outliers", "-p", "smooth", "-p", "quantize-dynamic:gptq=true",
            "--calibration", str(calibration), "--no-bench", "--report", str(report)]
    assert main(args) == 0
    steps = json.loads((report / "report.json").read_text())["steps"]
    assert [s["pass"] for s in steps] == ["input", "split-outliers", "smooth", "quantize-dynamic"]
    assert any("GPTQ" in note for note in steps[3]["notes"])
    assert {n.op_type for n in io.load(out).graph} >= {"MatMulInteger", "Mul"}


def test_smooth_without_calibration_exits_2(mlp_path, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    assert main(["run", str(mlp_path), "-o", str(out), "-p", "smooth", "--no-bench"]) == 2
    err = capsys.readouterr().err.strip()
    assert "calibration" in err and "\n" not in err and not out.exists()


def _labels_file(model_path, folder):
    """An .npz of 32 inputs and the labels the model itself gives them (accuracy 1.0 before any pass)."""
    x = np.random.default_rng(3).standard_normal((32, 16)).astype(np.float32)
    labels = np.argmax(runtime.run(io.load(model_path), {"x": x})["y"], axis=1)
    path = folder / "labelled.npz"
    np.savez(path, x=x, labels=labels)
    return path, x


def test_max_drop_rolls_back_a_step_breaking_the_budget_on_the_labels(mlp_path, tmp_path):
    labelled, x = _labels_file(mlp_path, tmp_path)
    out, report = tmp_path / "o.onnx", tmp_path / "report"
    args = ["run", str(mlp_path), "-o", str(out), "-p", "test-scale:factor=0.5", "-p", "test-scale:factor=-1",
            "--labels", str(labelled), "--metric", "top1", "--max-drop", "0.05", "--no-bench", "--report", str(report)]
    assert main(args) == 0
    steps = json.loads((report / "report.json").read_text())["steps"]
    assert [(s["pass"], s["status"]) for s in steps] == [("input", "input"), ("test-scale", "kept"), ("test-scale", "rolled back")]
    assert steps[0]["accuracy"] == 1.0 and steps[1]["accuracy"] == 1.0 and "max_drop" in steps[2]["notes"][-1]
    expected = runtime.run(io.load(mlp_path), {"x": x})["y"] * 0.25
    np.testing.assert_allclose(runtime.run(io.load(out), {"x": x})["y"], expected, rtol=1e-4, atol=1e-5)


def test_max_drop_without_labels_exits_2_before_any_pass_runs(mlp_path, tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(CompressionPass, "apply", lambda *args, **kwargs: ran.append(args))
    out = tmp_path / "o.onnx"
    assert main(["run", str(mlp_path), "-o", str(out), "-p", "test-scale", "--max-drop", "0.05", "--no-bench"]) == 2
    err = capsys.readouterr().err.strip()
    assert "max_drop needs labelled data" in err and "--labels" in err and "\n" not in err
    assert ran == [] and not out.exists()


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((4, 16), np.float32)}, "needs a 1-D integer array 'labels'"),
    ({"x": np.zeros((4, 16), np.float32), "labels": np.arange(3)}, "3 labels, but inputs"),
    ({"image": np.zeros((4, 16), np.float32), "labels": np.arange(4)}, r"inputs lack \['x'\]"),
])
def test_bad_labels_file_exits_2_in_one_line(mlp_path, tmp_path, capsys, arrays, message):
    labelled = tmp_path / "l.npz"
    np.savez(labelled, **arrays)
    args = ["run", str(mlp_path), "-o", str(tmp_path / "o.onnx"), "-p", "test-scale", "--labels", str(labelled), "--max-drop", "0.1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and str(labelled) in err and "\n" not in err


def test_unknown_metric_exits_2(mlp_path, tmp_path, capsys):
    labelled, _ = _labels_file(mlp_path, tmp_path)
    assert main(["run", str(mlp_path), "-o", str(tmp_path / "o.onnx"), "-p", "test-scale", "--labels", str(labelled), "--metric", "top5"]) == 2
    assert "top5" in capsys.readouterr().err


FIXED_LENGTH_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
fixed (float[N, S] x) => (float[N, S] y) <float[1, 8] c = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}> {
  y = Add(x, c)
}
"""


def test_without_inputs_the_checks_run_on_calibration_samples(tmp_path, capsys):
    """A model that runs only at its data's length (declared dynamic, fixed by a constant) is checked on the
    calibration samples, not on synthetic inputs at a guessed length."""
    import onnx.parser

    model = tmp_path / "fixed.onnx"
    onnx.save(onnx.parser.parse_model(FIXED_LENGTH_TEXT), model)
    calibration = tmp_path / "cal.npz"
    np.savez(calibration, x=np.ones((4, 8), np.float32))
    report = tmp_path / "rep"
    args = ["run", str(model), "-o", str(tmp_path / "o.onnx"), "-p", "cleanup", "--no-bench", "--report", str(report)]
    assert main(args) == 2  # synthetic inputs at a guessed length do not run it
    capsys.readouterr()
    assert main([*args, "--calibration", str(calibration)]) == 0
    assert "checks and timings on the first held-out calibration sample" in capsys.readouterr().err
    steps = json.loads((report / "report.json").read_text())["steps"]
    assert steps[0]["details"]["input_shapes"] == {"x": [1, 8]}


def test_piped_run_says_each_step_on_stderr_and_quiet_says_nothing(mlp_path, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ONNXCOMPRESS_LOG")
    assert main(["run", str(mlp_path), "-o", str(tmp_path / "a.onnx"), "-p", "test-noop", "-p", "cleanup", "--no-bench"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [re.sub(r"^\[ *\d+\.\ds\] ", "", line) for line in lines] == ["step 1/2: test-noop", "step 2/2: cleanup"]
    assert main(["-q", "run", str(mlp_path), "-o", str(tmp_path / "b.onnx"), "-p", "test-noop", "--no-bench"]) == 0
    assert capsys.readouterr().err == ""


def test_bench_each_times_every_step_and_the_default_only_the_ends(mlp_path, tmp_path):
    for flag, timed in (([], [True, False, True]), (["--bench-each"], [True, True, True])):
        report = tmp_path / f"report{len(flag)}"
        assert main(["run", str(mlp_path), "-o", str(tmp_path / f"m{len(flag)}.onnx"), "-p", "test-noop", "-p", "cleanup", *flag, "--report", str(report)]) == 0
        steps = json.loads((report / "report.json").read_text())["steps"]
        assert [step["latency_ms"] is not None for step in steps] == timed


def _png_folder(folder, count: int = 12):
    """``count`` seeded random 8x8 RGB PNGs, and the same images as float32 HWC in [0, 1]."""
    from PIL import Image

    folder.mkdir()
    pixels = np.random.default_rng(5).integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{index:02}.png")
    return folder, pixels.astype(np.float32) / 255.0


def test_image_folder_mean_and_std_calibrate_as_the_normalised_arrays_would(cnn_path, tmp_path, capsys):
    folder, images = _png_folder(tmp_path / "images")
    mean, std = np.array([0.5, 0.4, 0.3], np.float32), np.array([0.25, 0.2, 0.5], np.float32)
    normalised = io.save_arrays(tmp_path / "normalised.npz", {"x": ((images - mean) / std).transpose(0, 3, 1, 2)})
    run = ["run", str(cnn_path), "-p", "quantize-static:method=minmax", "--no-bench", "--calibration"]
    assert main([*run, str(folder), "--mean", "0.5,0.4,0.3", "--std", "0.25,0.2,0.5", "-o", str(tmp_path / "folder.onnx")]) == 0
    err = capsys.readouterr().err
    assert f"calibration: 12 images from {folder}, resized to 8x8, scaled to [0, 1], minus mean 0.5,0.4,0.3, divided by std 0.25,0.2,0.5, NCHW" in err
    assert main([*run, str(normalised), "-o", str(tmp_path / "arrays.onnx")]) == 0
    assert main([*run, str(folder), "-o", str(tmp_path / "plain.onnx")]) == 0
    assert "scaled to [0, 1] without mean/std normalisation, NCHW" in capsys.readouterr().err
    assert (tmp_path / "folder.onnx").read_bytes() == (tmp_path / "arrays.onnx").read_bytes() != (tmp_path / "plain.onnx").read_bytes()


DYNAMIC_IMAGE_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[N, A, B, C] x) => (float[N, A, B, C] y) { y = Relu(x) }
"""


def test_layout_and_image_size_read_a_folder_for_a_model_that_leaves_them_dynamic(tmp_path, capsys):
    import onnx.parser

    model = tmp_path / "dynamic.onnx"
    onnx.save(onnx.parser.parse_model(DYNAMIC_IMAGE_TEXT), model)
    folder, _ = _png_folder(tmp_path / "images", count=2)
    report = tmp_path / "rep"
    args = ["run", str(model), "-o", str(tmp_path / "o.onnx"), "-p", "test-noop", "--no-bench", "--report", str(report),
            "--calibration", str(folder), "--layout", "nhwc", "--image-size", "4,6"]
    assert main(args) == 0
    assert "resized to 4x6, scaled to [0, 1] without mean/std normalisation, NHWC" in capsys.readouterr().err
    assert json.loads((report / "report.json").read_text())["steps"][0]["details"]["input_shapes"] == {"x": [1, 4, 6, 3]}


TEXT_MODEL_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
text (int64[N, S] input_ids, int64[N, S] attention_mask, int64[N, S] token_type_ids) => (int64[N, S] y) {
  ids = Add(input_ids, attention_mask)
  y = Add(ids, token_type_ids)
}
"""


def test_a_text_file_with_a_tokenizer_folder_is_tokenized_for_the_model(tmp_path, capsys):
    import onnx.parser
    from tokenizers import Tokenizer

    from onnxcompress.models import minilm

    model = tmp_path / "text.onnx"
    onnx.save(onnx.parser.parse_model(TEXT_MODEL_TEXT), model)
    sentences = ["The cat sat.", "A sentence a good deal longer than the first one, with a comma."]
    (tmp_path / "sentences.txt").write_text("\n".join(sentences) + "\n")
    report = tmp_path / "rep"
    args = ["run", str(model), "-o", str(tmp_path / "o.onnx"), "-p", "test-noop", "--no-bench", "--report", str(report),
            "--calibration", str(tmp_path / "sentences.txt"), "--tokenizer", str(minilm.model_path())]
    assert main(args) == 0
    assert f"calibration: sentences of {tmp_path / 'sentences.txt'}, tokenized for input_ids, attention_mask, token_type_ids" in capsys.readouterr().err
    tokenizer = Tokenizer.from_file(str(minilm.model_path() / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128 tokens
    longest = max(len(tokenizer.encode(s).ids) for s in sentences)
    shapes = json.loads((report / "report.json").read_text())["steps"][0]["details"]["input_shapes"]
    assert shapes == {name: [1, longest] for name in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.mark.parametrize(("data", "options", "message"), [
    (None, ["--mean", "0.5"], "--mean says how to read calibration data; give --calibration too"),
    ("cal.npz", ["--tokenizer", "tok"], "a tokenizer reads a text file of sentences, and calibration data {tmp}/cal.npz is an .npz"),
    ("cal.npz", ["--image-size", "8,8"], "image options (size) apply to a folder of images, and calibration data {tmp}/cal.npz is a file"),
    ("sentences.txt", [], "calibration data {tmp}/sentences.txt: a text file needs the folder of its tokenizer.json (--tokenizer DIR)"),
    ("images", ["--image-size", "8"], "--image-size takes H,W, got '8'"),
    ("images", ["--image-size", "8,0"], "--image-size takes H,W, got '8,0'"),
    ("images", ["--mean", "0.5,red"], "--mean takes r,g,b, got '0.5,red'"),
    ("images", ["--std", "0.5,0.5"], "image std needs 1 or 3 values, got 2"),
    ("images", ["--layout", "chw"], "image layout must be one of ('NCHW', 'NHWC'), got 'chw'"),
])
def test_calibration_options_that_do_not_fit_exit_2_in_one_line(cnn_path, tmp_path, capsys, data, options, message):
    np.savez(tmp_path / "cal.npz", x=np.zeros((4, 3, 8, 8), np.float32))
    (tmp_path / "sentences.txt").write_text("one sentence\n")
    _png_folder(tmp_path / "images", count=1)
    out = tmp_path / "o.onnx"
    calibration = ["--calibration", str(tmp_path / data)] if data else []
    assert main(["run", str(cnn_path), "-o", str(out), "-p", "test-noop", "--no-bench", *calibration, *options]) == 2
    assert capsys.readouterr().err == f"error: {message.format(tmp=tmp_path)}\n" and not out.exists()


@pytest.mark.parametrize("command", [["recommend"], ["verify", "--bisect", "recipe.toml"]])
def test_recommend_and_verify_bisect_take_the_same_calibration_options(cnn_path, capsys, command):
    assert main([command[0], str(cnn_path), *command[1:], "--layout", "nhwc"]) == 2
    assert capsys.readouterr().err == "error: --layout says how to read calibration data; give --calibration too\n"


def test_the_step_table_fits_an_80_column_terminal(mlp_path, tmp_path, capsys, monkeypatch):
    from onnxcompress.cli.app import console

    monkeypatch.setattr(console, "width", 80)
    assert main(["run", str(mlp_path), "-o", str(tmp_path / "a.onnx"), "-p", "test-noop", "-p", "test-scale:factor=0.5", "--no-bench"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80
    assert "│ test-scale " in out and "…" not in out  # no cell cut short
    assert "latency ms" not in out  # nothing was timed, so no empty latency column


def test_each_progress_line_is_printed_once_after_ort_logs_to_the_root_logger(mlp_path, tmp_path):
    """ORT's quantizer calls ``logging.info`` on the root logger, which gives the root a stderr handler
    (``basicConfig``); progress after it must not print twice ("INFO:onnxcompress:...")."""
    script = shutil.which("onnxcompress")
    assert script is not None
    args = [script, "run", str(mlp_path), "-p", "quantize-dynamic", "-p", "cleanup", "-o", str(tmp_path / "o.onnx"), "--no-bench"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "ONNXCOMPRESS_LOG": "info"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("step 2/2: cleanup") == 1 and "INFO:" not in done.stderr


def test_weights_listed_as_inputs_get_a_hint_unless_the_chain_makes_them_constants(tmp_path, capsys):
    """A keep_initializers_as_inputs export: fuse alone would find nothing, and the run says why and what to add."""
    import onnx_ir as ir

    from ...passes.test_remove_initializer_inputs import WEIGHTS_AS_INPUTS

    source = tmp_path / "exposed.onnx"
    ir.save(ir.from_onnx_text(WEIGHTS_AS_INPUTS), source)
    out = tmp_path / "out.onnx"
    assert main(["run", str(source), "-o", str(out), "-p", "fuse", "--no-bench"]) == 0
    hint = "hint: 3 weights are also graph inputs (IR < 4, or exported with keep_initializers_as_inputs=True)"
    assert hint in capsys.readouterr().err.replace("\n", " ")
    assert main(["run", str(source), "-o", str(out), "-p", "remove-initializer-inputs", "-p", "fuse", "--no-bench"]) == 0
    assert "hint:" not in capsys.readouterr().err
    assert [v.name for v in ir.load(out).graph.inputs] == ["x"]
