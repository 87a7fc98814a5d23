"""``onnxcompress recommend``: family, reasons and command printed; ``--apply`` writes the model."""

from __future__ import annotations

from onnxcompress import io, stats
from onnxcompress.cli import main


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
