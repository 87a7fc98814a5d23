"""``onnxcompress demo --quick``: every file written, the reports consistent with the models on disk,
and honest that a smoke run judges no target."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxcompress import io, runtime, stats
from onnxcompress.cli import main
from onnxcompress.apps.demo import SMOKE_NOTE, DemoResult
from onnxcompress.report import Report


@pytest.mark.slow
def test_quick_demo_writes_consistent_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    for name in ("teacher.onnx", "student.onnx", "final.onnx", "test.npz", "report.json", "report.md", "report.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    names = [s["pass"] for s in report["stages"]["steps"]]
    assert names == ["teacher", "student (labels only)", "student (distilled)", "final (after passes)"]
    final = report["stages"]["steps"][-1]
    with np.load(out / "test.npz") as test:
        x, y = test["x"], test["y"]
    logits = runtime.run(io.load(out / "final.onnx"), {"image": x})["logits"]
    assert final["accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == y)))
    assert final["size_bytes"] == stats.model_stats(io.load(out / "final.onnx")).size_bytes
    assert final["size_bytes"] < report["stages"]["steps"][0]["size_bytes"]  # smaller than the teacher
    assert [s["pass"] for s in report["pipeline"]["steps"]][:2] == ["input", "fold-constants"]
    assert report["targets"] is None  # models trained to near chance: nothing to judge
    assert SMOKE_NOTE in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert "stages (speedup vs the teacher)" in printed and "wrote" in printed
    assert SMOKE_NOTE in printed and "met:" not in printed and "MISSED:" not in printed


def test_judged_targets_read_met_or_missed():
    result = DemoResult(Report([]), Report([]), {"small": True, "fast": False})
    assert result.target_lines() == ["met: small", "MISSED: fast"]
    assert DemoResult(Report([]), Report([]), None).target_lines() == [SMOKE_NOTE]


def test_demo_into_a_file_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    assert main(["demo", "--quick", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot write the demo into" in err
