"""``onnxcompress compare``: table with Pareto marks, JSON and PNG outputs, bad recipes exit 2."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

from onnxcompress import io
from onnxcompress.cli import main


def test_compare_writes_json_and_plot(mlp_path, tmp_path, capsys):
    js, png = tmp_path / "c.json", tmp_path / "c.png"
    args = ["compare", str(mlp_path), "-r", "test-noop", "-r", "test-scale:factor=-1;test-noop", "--rounds", "1", "--threads", "1"]
    assert main([*args, "--json", str(js), "--plot", str(png)]) == 0
    document = json.loads(js.read_text())
    records = document["outcomes"]
    assert [r["name"] for r in records] == ["input", "test-noop", "test-scale:factor=-1;test-noop"]
    recipes = "-r test-noop -r 'test-scale:factor=-1;test-noop'"
    assert document["provenance"]["command"] == f"onnxcompress compare {mlp_path} {recipes} --plot {png} --json {js} --threads 1 --rounds 1"
    assert document["provenance"]["recipe"] == ["test-noop", "test-scale:factor=-1;test-noop"]
    assert document["provenance"]["input_sha256"] == hashlib.sha256(mlp_path.read_bytes()).hexdigest()
    assert records[2]["quality"] < records[0]["quality"] and any(r["pareto"] for r in records[:2])
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "Pareto" in capsys.readouterr().out


def test_unknown_pass_in_a_recipe_exits_2(mlp_path, capsys):
    assert main(["compare", str(mlp_path), "-r", "fuse;squash"]) == 2
    assert "unknown pass 'squash'" in capsys.readouterr().err


def test_no_recipe_exits_2(mlp_path, capsys):
    assert main(["compare", str(mlp_path)]) == 2
    assert "no recipes given" in capsys.readouterr().err


def test_json_holds_every_recipe_even_with_a_deep_model(mlp_path, tmp_path):
    js = tmp_path / "c.json"
    recipes = ["test-noop", "test-slowdown:depth=600", "test-scale:factor=0.5;test-noop"]
    args = ["compare", str(mlp_path), *[a for r in recipes for a in ("-r", r)], "--rounds", "1", "--threads", "1", "--json", str(js)]
    assert main(args) == 0
    records = json.loads(js.read_text())["outcomes"]
    assert [r["name"] for r in records] == ["input", *recipes]
    assert all(set(r) == {"name", "size_bytes", "latency_ms", "quality", "speedup", "pareto"} for r in records)


def test_more_workers_without_ray_names_the_extra(mlp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["compare", str(mlp_path), "-r", "cleanup", "--workers", "2"]) == 2
    assert capsys.readouterr().err == "error: --workers 2 runs tasks on Ray, which is not installed: pip install 'onnxcompress[scale]'\n"


def test_without_inputs_recipes_are_judged_on_the_calibration_samples(cnn_path, tmp_path):
    # far from the synthetic inputs: static INT8 calibrated here reads quality 0.69 on synthetic ones, 0.9999 on these
    shifted = io.save_arrays(tmp_path / "shifted.npz", {"x": np.random.default_rng(0).uniform(5, 6, (32, 3, 8, 8)).astype(np.float32)})
    js = tmp_path / "c.json"
    args = ["compare", str(cnn_path), "-r", "quantize-static", "--calibration", str(shifted), "--json", str(js), "--rounds", "1", "--threads", "1"]
    assert main(args) == 0
    assert json.loads(js.read_text())["outcomes"][1]["quality"] > 0.999
