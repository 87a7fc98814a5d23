"""``onnxcompress inspect``: tables and JSON of a model's facts; bad files are one-line errors."""

from __future__ import annotations

import json

from onnxcompress.cli import main


def test_json_output(mlp_path, capsys):
    assert main(["inspect", str(mlp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 16 * 32 + 32 + 32 * 4 and data["nodes"] == 4
    assert data["size_bytes"] == mlp_path.stat().st_size
    assert data["op_histogram"] == {"MatMul": 2, "Add": 1, "Relu": 1}


def test_tables(cnn_path, capsys):
    assert main(["inspect", str(cnn_path)]) == 0
    out = capsys.readouterr().out
    assert "opset 17" in out and "Conv" in out and "Gemm" in out


def test_not_a_model_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
