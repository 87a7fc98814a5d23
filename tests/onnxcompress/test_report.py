"""The report: JSON schema of every step, strict JSON for inf/NaN, Markdown table and notes."""

from __future__ import annotations

import json

import pytest

from onnxcompress.bench import Latency
from onnxcompress.fidelity import Fidelity, OutputFidelity
from onnxcompress.pipeline import Measurement, Pipeline
from onnxcompress.report import Report, StepRecord
from onnxcompress.spec import parse_pass

FIELD_TYPES = {
    "pass": str,
    "options": dict,
    "status": str,
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
    pipeline = Pipeline([parse_pass("test-noop"), parse_pass("test-scale:factor=0.5")], measurement=Measurement(rounds=1, threads=1))
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


def test_json_is_strict_when_values_are_not_finite():
    broken = Fidelity([OutputFidelity("y", float("inf"), 1.0, float("nan"), False)])
    report = Report([_step("input", "input"), _step("x", "kept", fidelity=broken, speedup=float("inf"))])
    data = json.loads(report.to_json(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["steps"][1]["fidelity"] == {
        "max_abs_err": None, "cosine": None, "exact": False, "worst_slice": {"output": "y", "error": 0.0, "axis": None, "index": None},
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
