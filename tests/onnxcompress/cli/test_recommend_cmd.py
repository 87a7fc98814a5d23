"""``onnxcompress recommend``: family, reasons and command printed; ``--apply`` writes the model."""

from __future__ import annotations

from onnxcompress import io, runtime, stats
from onnxcompress import recommend as recommend_lib
from onnxcompress.cli import main
from onnxcompress.passes import CompressionPass


def test_prints_family_steps_and_command(cnn_path, capsys):
    assert main(["recommend", str(cnn_path)]) == 0
    out = capsys.readouterr().out
    assert f"{cnn_path}: cnn (Conv x1)" in out.replace("\n", "")
    assert "int8 support:" in out and "onnxcompress run" in out


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


def test_apply_without_calibration_for_a_chain_needing_it_exits_2_before_anything_runs(cnn_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(recommend_lib, "cpu_features", lambda: recommend_lib.CpuFeatures("x86_64", frozenset({"avx512_vnni"})))
    ran = []
    monkeypatch.setattr(CompressionPass, "apply", lambda *args, **kwargs: ran.append("a pass"))
    monkeypatch.setattr(runtime, "run", lambda *args, **kwargs: ran.append("a model"))
    out = tmp_path / "opt.onnx"
    assert main(["recommend", str(cnn_path), "--apply", "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert "quantize-static" in captured.out  # the recommendation is printed first
    err = captured.err.strip()
    assert "quantize-static needs calibration data (--calibration)" in err and "\n" not in err
    assert ran == [] and not out.exists()
