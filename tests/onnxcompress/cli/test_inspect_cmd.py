"""``onnxcompress inspect``: tables and JSON of a model's facts; bad files are one-line errors."""

from __future__ import annotations

import json

import onnx_ir as ir

from onnxcompress import io
from onnxcompress.cli import main
from onnxcompress.cli.app import console
from onnxcompress.passes import Fuse

CONV_BN_RELU = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 4, 4] x) => (float[1, 3, 4, 4] y)
  <float[3, 2, 1, 1] w = {1, 2, 3, 4, 5, 6}, float[3] s = {1.5, 0.5, 2.0}, float[3] b = {0.1, -0.2, 0.3},
   float[3] m = {0.05, 0.1, -0.1}, float[3] v = {0.9, 1.1, 0.7}> {
    conv = Conv(x, w)
    bn = BatchNormalization(conv, s, b, m, v)
    y = Relu(bn)
}
"""


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


def test_nodes_lists_names_op_types_and_the_names_a_fused_node_took_over(tmp_path, capsys) -> None:
    model = ir.from_onnx_text(CONV_BN_RELU)
    for node, name in zip(model.graph, ("/stem/stem.0/Conv", "/stem/stem.1/BatchNormalization", "/stem/stem.2/Relu")):
        node.name = name
    Fuse()(model)
    path = io.save(model, tmp_path / "fused.onnx")
    assert main(["inspect", str(path), "--nodes"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Conv  /stem/stem.0/Conv  (also /stem/stem.1/BatchNormalization)",
        "Relu  /stem/stem.2/Relu",
    ]
    assert main(["inspect", str(path), "--nodes", "--op", "Relu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "/stem/stem.2/Relu", "op_type": "Relu", "names": ["/stem/stem.2/Relu"]}]


def test_nodes_are_cut_to_the_terminal_and_whole_when_piped(tmp_path, capsys, monkeypatch) -> None:
    model = ir.from_onnx_text(CONV_BN_RELU)
    long_name = "/encoder/" + "layer/" * 50 + "Relu"
    model.graph.node(2).name = long_name
    path = io.save(model, tmp_path / "long.onnx")
    assert main(["inspect", str(path), "--nodes", "--op", "Relu"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"Relu  {long_name}"]
    monkeypatch.setattr(console, "_force_terminal", True)
    monkeypatch.setattr(console, "width", 80)
    assert main(["inspect", str(path), "--nodes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and max(map(len, lines)) <= 80 and lines[2].startswith("Relu ") and lines[2].endswith("…")
