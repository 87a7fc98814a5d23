"""``onnxcompress bench``: side-by-side table and ``--json`` with ratios to the first model."""

from __future__ import annotations

import json

from onnxcompress.cli import main


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
    assert "median ms" in capsys.readouterr().out


def test_bench_bad_shape_pin_exits_2(mlp_path, capsys):
    assert main(["bench", str(mlp_path), "--input-shape", "x"]) == 2
    assert "bad --input-shape" in capsys.readouterr().err
