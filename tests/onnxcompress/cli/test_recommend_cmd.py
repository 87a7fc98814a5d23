"""``onnxcompress recommend``: family, what was checked, reasons and command printed; the command runs as printed;
``--apply`` writes the model."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest

from onnxcompress import bench, io, runtime, stats
from onnxcompress import recommend as recommend_lib
from onnxcompress.cli import main

from ...passes.pruning.test_prune_channels import constant_channels, constant_channels_data
from ..conftest import CNN_TEXT, with_random_weights
from ..test_recommend import float_weights

MEASURE = bench.measure


@pytest.fixture(autouse=True)
def steady_latency(monkeypatch):
    """Steps are timed by a stand-in (a tiny model's latency is noise) and --apply's benchmark is one short round:
    these tests check what is printed, written and run, not how fast."""
    monkeypatch.setattr(recommend_lib, "side_by_side", float_weights)
    monkeypatch.setattr(bench, "measure", lambda *a, **k: MEASURE(*a, **{**k, "rounds": 1, "round_seconds": 0.01, "max_extra_rounds": 0}))


@pytest.fixture
def cnn_path(tmp_path, monkeypatch):
    """The tests' CNN with an Identity before its output, so that cleanup has something to remove, and steps timed by
    their nodes (then float weights): recommend leaves out steps that change nothing."""
    text = CNN_TEXT.replace("y = Gemm <transB = 1> (f, fc)", "g = Gemm <transB = 1> (f, fc)\n  y = Identity(g)")
    monkeypatch.setattr(recommend_lib, "side_by_side", lambda models, feeds, **_: [
        1e4 * len(list(m.graph)) + w for m, w in zip(models, float_weights(models, feeds))])
    return io.save(with_random_weights(text, seed=1), tmp_path / "cnn.onnx")


def test_prints_family_steps_and_command(cnn_path, capsys):
    assert main(["recommend", str(cnn_path)]) == 0
    out = capsys.readouterr().out
    assert f"{cnn_path}: cnn (Conv x1)" in out.replace("\n", "")
    assert "int8 support:" in out and "onnxcompress run" in out
    assert "checked on this model, step by step: fidelity against the input on synthetic inputs" in out.replace("\n", "")
    assert "not checked: fidelity on the model's task" in out and "measured: the chain against the input: slice error" in out


def test_the_printed_command_runs_as_printed(tmp_path, monkeypatch, capsys):
    """Pruning breaks this model's outputs: recommend drops it, says why, and prints a command that then runs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(recommend_lib, "cpu_features", lambda: recommend_lib.CpuFeatures("x86_64", frozenset({"avx512_vnni"})))
    io.save(constant_channels(low_bias=1.0), tmp_path / "m.onnx")
    data = constant_channels_data()
    np.savez(tmp_path / "calib.npz", **data)
    labels = runtime.run(io.load(tmp_path / "m.onnx"), {"x": data["x"][:16]})["y"].reshape(16, -1).argmax(axis=1)
    np.savez(tmp_path / "labelled.npz", x=data["x"][:16], labels=labels)
    assert main(["recommend", "m.onnx", "--calibration", "calib.npz", "--labels", "labelled.npz", "--json", "rec.json"]) == 0
    out = capsys.readouterr().out
    assert f"dropped prune-channels:ratio=0.3 + {recommend_lib.RECOVERY}: recover: accuracy drop" in out.replace("\n", "")
    assert "on 16 labelled samples" in out.replace("\n", "") and "not checked" not in out
    command = out.split("run it with:")[1].strip()
    assert "prune-channels" not in command and "--calibration calib.npz --labels labelled.npz" in command
    written = json.loads((tmp_path / "rec.json").read_text())
    assert written["command"] == command and written["proof"]["judged_on"] == "16 labelled samples"
    assert [c["spec"] for c in written["proof"]["checks"] if not c["kept"] and c["reason"] != recommend_lib.UNCHANGED] == [
        f"prune-channels:ratio=0.3 + {recommend_lib.RECOVERY}"]
    assert main(shlex.split(command)[1:]) == 0 and (tmp_path / "m.opt.onnx").is_file()


def test_apply_writes_the_optimized_model(mlp_path, tmp_path, capsys):
    out = tmp_path / "opt.onnx"
    assert main(["recommend", str(mlp_path), "--apply", "-o", str(out)]) == 0
    assert stats.model_stats(io.load(out)).outputs[0].name == "y"
    assert "wrote" in capsys.readouterr().out


def test_bad_target_and_apply_without_output_exit_2(mlp_path, capsys):
    assert main(["recommend", str(mlp_path), "--target", "tpu"]) == 2
    assert main(["recommend", str(mlp_path), "--apply"]) == 2
    err = capsys.readouterr().err
    assert "unknown --target 'tpu'" in err and "--apply needs -o OUT" in err


def test_the_printed_command_reads_an_image_folder_as_recommend_did(cnn_path, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for index, pixels in enumerate(np.random.default_rng(1).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)):
        Image.fromarray(pixels).save(folder / f"{index}.png")
    assert main(["recommend", str(cnn_path), "--calibration", str(folder), "--mean", "0.5", "--std", "0.25"]) == 0
    captured = capsys.readouterr()
    assert "minus mean 0.5,0.5,0.5, divided by std 0.25,0.25,0.25" in captured.err
    command = captured.out.split("run it with:")[1].strip()
    assert f"--calibration {folder}" in command and command.endswith("--mean 0.5 --std 0.25")


@pytest.mark.parametrize(("pin", "message"), [
    ("nope:1,3", "error: --input-shape names unknown inputs ['nope']; inputs are ['x']"),
    ("x:a,b", "error: bad --input-shape 'x:a,b': expected NAME:d0,d1,... with integers"),
])
def test_a_bad_input_shape_is_one_line_and_exit_2(tmp_path, capsys, pin, message):
    # recommend's own --input-shape: an unknown name was swallowed with the shapeless-input case and the run went on
    path = io.save(with_random_weights(CNN_TEXT), tmp_path / "cnn.onnx")
    before = path.read_bytes()
    assert main(["recommend", str(path), "--input-shape", pin]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
    assert path.read_bytes() == before
