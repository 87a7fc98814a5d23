"""The report: provenance first, JSON schema of every step, strict JSON for inf/NaN, Markdown header, table and
notes, and a line instead of the chart without matplotlib."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from onnxcompress import io, plot

from onnxcompress.bench import Latency
from onnxcompress.fidelity import Fidelity, OutputFidelity
from onnxcompress.pipeline import Measurement, Pipeline
from onnxcompress.records import NOISY_NOTE
from onnxcompress.report import Report, StepRecord
from onnxcompress.spec import parse_pass

FIELD_TYPES = {
    "pass": str,
    "options": dict,
    "status": str,
    "exact": (bool, type(None)),
    "size_bytes": int,
    "params": int,
    "nodes": int,
    "op_histogram": dict,
    "latency_ms": dict,
    "speedup": float,
    "fidelity": dict,
    "accuracy": (float, type(None)),
    "seconds": float,
    "notes": list,
    "details": dict,
}
LATENCY_TYPES = {"median_ms": float, "p10_ms": float, "p90_ms": float, "batch": int, "threads": int, "clean": bool}


def _latency(ms: float) -> Latency:
    return Latency(ms, ms * 0.9, ms * 1.2, runs=10, rounds_kept=2, rounds_dropped=1, batch=1, threads=2)


def _step(name: str, status: str, **extra) -> StepRecord:
    return StepRecord(name, {}, status, 1000, 10, 3, {"MatMul": 2, "Relu": 1}, **extra)


def test_json_has_every_field_with_its_type_for_every_step(mlp_model, tmp_path):
    pipeline = Pipeline([parse_pass("test-noop"), parse_pass("test-scale:factor=0.5")], measurement=Measurement(rounds=1, threads=1, each_step=True))
    report = pipeline.run(mlp_model).report
    path = tmp_path / "report.json"
    report.write_json(path)
    steps = json.loads(path.read_text())["steps"]
    assert [s["pass"] for s in steps] == ["input", "test-noop", "test-scale"]
    for step in steps:
        for field, kind in FIELD_TYPES.items():
            assert isinstance(step[field], kind), (step["pass"], field, step[field])
        for field, kind in LATENCY_TYPES.items():
            assert isinstance(step["latency_ms"][field], kind), field
        assert set(step["fidelity"]) >= {"max_abs_err", "cosine", "exact"}
        assert step["op_histogram"] == {"MatMul": 2, "Add": 1, "Relu": 1}
    assert steps[2]["options"] == {"factor": 0.5} and steps[1]["notes"] == ["nothing to do"]
    assert steps[1]["latency_ms"]["threads"] == 1
    assert [s["exact"] for s in steps] == [None, True, False]


def test_json_is_strict_when_values_are_not_finite():
    broken = Fidelity([OutputFidelity("y", float("inf"), 1.0, float("nan"), False)])
    report = Report([_step("input", "input"), _step("x", "kept", fidelity=broken, speedup=float("inf"))])
    data = json.loads(report.to_json(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["steps"][1]["fidelity"] == {
        "max_abs_err": None, "cosine": None, "exact": False, "worst_slice": {"output": "y", "error": 0.0, "axis": None, "index": None},
        "changed": 0.0,
        "outputs": [{"name": "y", "max_abs_err": None, "cosine": None, "exact": False, "slice_error": 0.0, "changed": None}],
    }
    assert data["steps"][1]["speedup"] is None


def test_markdown_table_has_one_row_per_step_and_the_notes():
    steps = [
        _step("input", "input", latency=_latency(2.0), speedup=1.0),
        _step("fuse", "kept", latency=_latency(1.0), speedup=2.0, notes=["fused 3 Gelu"]),
        _step("prune", "rolled back", notes=["rolled back: accuracy dropped"]),
    ]
    steps[2].options = {"ratio": 0.5}
    text = Report(steps).to_markdown()
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0].startswith("| step | size MB | params | nodes | latency ms | p10-p90 ms | speedup |")
    assert len(table) == 2 + 3
    assert "| fuse | 0.001 | 10 | 3 | 1.000 | 0.900-1.200 | 2.00x |" in table[3]
    assert "prune (rolled back)" in table[4] and "| - |" in table[4]
    assert "### 1. fuse\n- fused 3 Gelu" in text
    assert "### 2. prune (ratio=0.5)\n- rolled back: accuracy dropped" in text


def test_write_puts_json_markdown_and_png_in_a_new_folder(tmp_path):
    report = Report([_step("input", "input", latency=_latency(1.0))])
    written = report.write(tmp_path / "a" / "b")
    assert [p.name for p in written] == ["report.json", "report.md", "report.png"]
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.write(tmp_path / "c", plot=False)[-1].name == "report.md"


def test_json_opens_with_the_provenance(mlp_path, tmp_path):
    report = Pipeline([parse_pass("test-noop")], measurement=Measurement(benchmark=False, threads=1)).run(io.load(mlp_path)).report
    report.write_json(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert list(data) == ["provenance", "steps"]
    assert data["provenance"]["input_sha256"] == hashlib.sha256(mlp_path.read_bytes()).hexdigest()
    assert data["provenance"]["command"] is None and data["provenance"]["recipe"] == ["test-noop"]


def test_markdown_opens_with_the_model_name_and_provenance_header(mlp_path):
    report = Pipeline([parse_pass("test-noop")], measurement=Measurement(benchmark=False, threads=1)).run(io.load(mlp_path)).report
    report.provenance.command = "onnxcompress run mlp.onnx -o o.onnx -p test-noop"
    lines = report.to_markdown().splitlines()
    assert lines[0] == f"# onnxcompress report: {mlp_path.name}"
    assert lines[2] == "- command: onnxcompress run mlp.onnx -o o.onnx -p test-noop"
    assert lines[3] == f"- input: {mlp_path.resolve()} (sha256 {hashlib.sha256(mlp_path.read_bytes()).hexdigest()})"
    assert any(line.startswith(f"- onnxcompress {report.provenance.versions['onnxcompress']}, onnxruntime ") for line in lines)


def test_without_matplotlib_the_folder_says_the_chart_was_not_drawn(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(plot, "available", lambda: False)
    report = Report([_step("input", "input", latency=_latency(1.0))])
    with caplog.at_level(logging.WARNING, logger="onnxcompress.report"):
        written = report.write(tmp_path / "rep")
    assert [p.name for p in written] == ["report.json", "report.md"]
    assert f"> {plot.MISSING}" in (tmp_path / "rep" / "report.md").read_text().splitlines()
    assert [r.getMessage() for r in caplog.records] == [plot.MISSING]
    assert "pip install 'onnxcompress[plot]'" in plot.MISSING


def test_markdown_shows_the_chart_it_was_written_with(tmp_path):
    Report([_step("input", "input", latency=_latency(1.0))]).write(tmp_path)
    assert "![size, latency and fidelity per step](report.png)" in (tmp_path / "report.md").read_text()
    Report([_step("input", "input")]).write(tmp_path / "no-chart", plot=False)
    assert "report.png" not in (tmp_path / "no-chart" / "report.md").read_text()


def test_noisy_latency_is_flagged_beside_the_figures(mlp_model):
    report = Pipeline([parse_pass("test-noop")], measurement=Measurement(rounds=1, threads=1)).run(mlp_model).report
    for step in report.steps:
        step.latency.rounds_kept = 0  # as when every round saw other processes on the CPU
    assert f"**{NOISY_NOTE}**" in report.to_markdown()
    for step in report.steps:
        step.latency.rounds_kept = 1
    assert NOISY_NOTE not in report.to_markdown()
