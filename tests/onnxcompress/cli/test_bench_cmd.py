"""``onnxcompress bench``: side-by-side table and ``--json`` with ratios to the first model."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir

from onnxcompress import io, synthetic_inputs
from onnxcompress.cli import main

IMAGE_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
image (float[N, 3, H, W] x) => (float[N, 3, H, W] y) { y = Relu(x) }
"""


def test_bench_json(mlp_path, cnn_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(mlp_path), str(cnn_path), "--rounds", "1", "--threads", "1", "--batch", "2", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["model"] for r in records] == [str(mlp_path), str(cnn_path)]
    assert records[0]["ratio"] == 1.0
    for r in records:
        assert r["batch"] == 2 and r["threads"] == 1 and r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["rounds_kept"] + r["rounds_dropped"] >= 1 and isinstance(r["clean"], bool)
    assert records[1]["ratio"] == records[1]["median_ms"] / records[0]["median_ms"]
    assert records[1]["speedup"] == records[0]["median_ms"] / records[1]["median_ms"]  # as run's table reads: > 1 is faster
    assert "median ms" in capsys.readouterr().out


def test_bench_bad_shape_pin_exits_2(mlp_path, capsys):
    assert main(["bench", str(mlp_path), "--input-shape", "x"]) == 2
    assert "bad --input-shape" in capsys.readouterr().err


def test_bench_takes_inputs_and_records_their_shapes(mlp_path, cnn_path, tmp_path, capsys):
    arrays = tmp_path / "x.npz"
    np.savez(arrays, x=np.ones((5, 16), np.float32))
    out = tmp_path / "bench.json"
    assert main(["bench", str(mlp_path), "--inputs", str(arrays), "--rounds", "1", "--threads", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())[0]
    assert record["input_shapes"] == {"x": [5, 16]} and record["batch"] == 5
    assert "synthetic inputs" not in capsys.readouterr().err
    assert main(["bench", str(cnn_path), "--inputs", str(arrays)]) == 2  # checked against every model
    assert "rank 4" in capsys.readouterr().err


def test_bench_says_which_shapes_dynamic_dims_were_measured_at(tmp_path, capsys):
    model = io.save(ir.from_onnx_text(IMAGE_TEXT), tmp_path / "image.onnx")
    out = tmp_path / "bench.json"
    assert main(["bench", str(model), "--rounds", "1", "--threads", "1", "--batch", "2", "--json", str(out)]) == 0
    side = synthetic_inputs.IMAGE_SIDE
    assert f"dynamic dims set to --input-shape x:2,3,{side},{side}" in capsys.readouterr().err
    assert json.loads(out.read_text())[0]["input_shapes"] == {"x": [2, 3, side, side]}


def test_bench_names_no_shapes_when_only_the_batch_is_dynamic(mlp_path, capsys):
    assert main(["bench", str(mlp_path), "--rounds", "1", "--threads", "1"]) == 0
    assert "dynamic dims" not in capsys.readouterr().err
