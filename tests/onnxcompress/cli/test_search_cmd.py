"""``onnxcompress search``: exit 0 writing the best and the JSON, exit 1 writing only the JSON when no candidate meets
the goal, exit 2 in one line for bad input (no goal, --max-drop without labels, a bad grid, no Ray for --workers 2)."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

from onnxcompress import io
from onnxcompress.cli import main

FAST = ["--rounds", "1", "--threads", "1"]


@pytest.fixture
def calibration(tmp_path):
    """32 samples for the test CNN, as an .npz."""
    return io.save_arrays(tmp_path / "calib.npz", {"x": np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32)})


def test_search_writes_the_best_meeting_the_goal_and_every_candidate(cnn_path, calibration, tmp_path, capsys):
    best, js = tmp_path / "best.onnx", tmp_path / "r.json"
    before = hashlib.sha256(cnn_path.read_bytes()).hexdigest()
    args = ["search", str(cnn_path), "-r", "prune-channels:ratio={0.25,0.5},accept_loss=true", "-r", "quantize-static",
            "--min-cosine", "0.85", "--calibration", str(calibration), "-o", str(best), "--json", str(js), *FAST]
    assert main(args) == 0
    document = json.loads(js.read_text())
    recipes = ["prune-channels:ratio=0.25,accept_loss=true", "prune-channels:ratio=0.5,accept_loss=true", "quantize-static"]
    assert [c["recipe"] for c in document["candidates"]] == recipes and document["provenance"]["recipe"] == recipes
    assert document["goal"] == {"min_cosine": 0.85, "max_drop": None, "max_latency": None, "max_size_mb": None}
    assert document["best"]["recipe"] in recipes and document["best"]["meets_goal"] and document["best"]["cosine"] >= 0.85
    assert set(document["pareto"]) <= set(recipes) and document["pareto"]
    half = document["candidates"][1]
    assert half["status"] == "ok" and not half["meets_goal"] and half["misses"][0].startswith("cosine ")
    for c in document["candidates"]:
        assert c["size_mb"] > 0 and c["params"] > 0 and c["latency_ms"] > 0 and c["latency_ratio"] > 0
        assert c["outputs"][0]["name"] == "y" and c["steps"][0]["pass"] == "input"
    assert io.load(best).graph.outputs[0].name == "y"
    assert hashlib.sha256(cnn_path.read_bytes()).hexdigest() == before
    assert f"best: {document['best']['recipe']}; wrote {best}" in capsys.readouterr().out


def test_no_candidate_meeting_the_goal_exits_1_and_writes_only_the_json(cnn_path, tmp_path, capsys):
    best, js = tmp_path / "best.onnx", tmp_path / "r.json"
    args = ["search", str(cnn_path), "-r", "prune-channels:ratio={0.5,0.75},accept_loss=true", "--min-cosine", "0.999",
            "-o", str(best), "--json", str(js), *FAST]
    assert main(args) == 1
    document = json.loads(js.read_text())
    assert document["best"] is None and not best.exists()
    assert [c["status"] for c in document["candidates"]] == ["ok", "skipped"]
    assert "only adds loss to 'prune-channels:ratio=0.5,accept_loss=true'" in document["candidates"][1]["reason"]
    assert capsys.readouterr().err == f"error: no candidate meets the goal (1 missed it, 0 failed, 1 skipped); {best} not written\n"


@pytest.mark.parametrize(("extra", "message"), [
    ([], "no goal given: set a minimum cosine (--min-cosine)"),
    (["--max-drop", "0.01"], "a maximum accuracy drop needs labelled data to measure accuracy on (--labels FILE.npz)"),
    (["--min-cosine", "0.9", "-r", "prune-channels:ratio={0.1,0.3"], "unbalanced or nested '{'"),
    (["--min-cosine", "0.9", "-r", "{fuse,squash}"], "unknown pass 'squash'"),
    (["--min-cosine", "0.9", "--json", "OUT"], "-o and --json are the same file"),
    (["--min-cosine", "0.9", "-r", "{,}"], "no recipes given"),
])
def test_bad_input_is_one_line_and_exit_2(cnn_path, tmp_path, extra, message, capsys):
    out = tmp_path / "best.onnx"
    recipe = [] if "-r" in extra else ["-r", "cleanup"]
    assert main(["search", str(cnn_path), *recipe, "-o", str(out), *[str(out) if a == "OUT" else a for a in extra]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_more_workers_without_ray_names_the_extra(cnn_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    args = ["search", str(cnn_path), "-r", "cleanup", "--min-cosine", "0.9", "-o", str(tmp_path / "b.onnx"), "--workers", "2"]
    assert main(args) == 2
    assert capsys.readouterr().err == "error: --workers 2 runs tasks on Ray, which is not installed: pip install 'onnxcompress[scale]'\n"
    assert not (tmp_path / "b.onnx").exists()


def _judged(document: dict) -> list[tuple]:
    """What two runs of one search must agree on: each candidate's recipe, status, size and cosine (not its timing)."""
    return [(c["recipe"], c["status"], c.get("size_mb"), c.get("cosine")) for c in document["candidates"]]


def test_ray_address_searches_on_that_cluster_as_the_serial_engine_does(cnn_path, calibration, tmp_path):
    cluster_utils = pytest.importorskip("ray.cluster_utils", reason="Ray is not installed (pip install 'onnxcompress[scale]')")
    common = ["-r", "prune-channels:ratio={0.25,0.5},accept_loss=true;{,quantize-static}", "--min-cosine", "0.85",
              "--calibration", str(calibration), "--prefer", "size", *FAST]  # timings differ between runs; sizes do not
    assert main(["search", str(cnn_path), *common, "-o", str(tmp_path / "serial.onnx"), "--json", str(tmp_path / "serial.json")]) == 0
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 2})  # a cluster this process did not start
    address = cluster.address
    try:
        args = ["--ray-address", address, "-o", str(tmp_path / "ray.onnx"), "--json", str(tmp_path / "ray.json")]
        assert main(["search", str(cnn_path), *common, *args]) == 0
        import ray
        assert not ray.is_initialized()  # the command left the cluster, and the cluster is still up
        assert cluster.head_node.dead_processes() == []
    finally:
        cluster.shutdown()
    serial, on_ray = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("serial", "ray"))
    assert on_ray["engine"]["address"] == address and serial["engine"]["address"] is None
    assert _judged(on_ray) == _judged(serial) and len(_judged(serial)) == 4
    assert on_ray["best"]["recipe"] == serial["best"]["recipe"]
    assert (tmp_path / "ray.onnx").read_bytes() == (tmp_path / "serial.onnx").read_bytes()


def test_an_unreachable_ray_address_is_one_line_and_exit_2(cnn_path, tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'onnxcompress[scale]')")
    out = tmp_path / "best.onnx"
    args = ["search", str(cnn_path), "-r", "cleanup", "--min-cosine", "0.9", "-o", str(out), "--ray-address", "127.0.0.1:1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot start or reach the Ray cluster at '127.0.0.1:1': ") and err.count("\n") == 1
    assert not out.exists()


def test_without_inputs_candidates_are_judged_on_the_calibration_samples(cnn_path, tmp_path):
    # far from the synthetic inputs: static INT8 calibrated here reads cosine 0.69 on synthetic ones, 0.9999 on these
    shifted = io.save_arrays(tmp_path / "shifted.npz", {"x": np.random.default_rng(0).uniform(5, 6, (32, 3, 8, 8)).astype(np.float32)})
    js = tmp_path / "r.json"
    args = ["search", str(cnn_path), "-r", "quantize-static", "--min-cosine", "0.5", "--calibration", str(shifted),
            "-o", str(tmp_path / "best.onnx"), "--json", str(js), *FAST]
    assert main(args) == 0
    assert json.loads(js.read_text())["candidates"][0]["cosine"] > 0.999
