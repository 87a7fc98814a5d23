"""The record of a pipeline run: one ``StepRecord`` per step, the input model first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from onnxcompress.bench import Latency
from onnxcompress.fidelity import Fidelity


@dataclasses.dataclass
class StepRecord:
    """What one step did to the model and what it measured afterwards."""

    pass_name: str
    options: dict[str, Any]
    status: str  # "input", "kept" or "rolled back"
    size_bytes: int
    params: int
    nodes: int
    op_histogram: dict[str, int]
    seconds: float = 0.0
    latency: Latency | None = None
    speedup: float | None = None
    fidelity: Fidelity | None = None
    accuracy: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the design's field names."""
        return {
            "pass": self.pass_name,
            "options": self.options,
            "status": self.status,
            "size_bytes": self.size_bytes,
            "params": self.params,
            "nodes": self.nodes,
            "op_histogram": self.op_histogram,
            "latency_ms": self.latency.to_dict() if self.latency else None,
            "speedup": self.speedup,
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
            "accuracy": self.accuracy,
            "seconds": self.seconds,
            "notes": self.notes,
            "details": self.details,
        }


@dataclasses.dataclass
class Report:
    """All the steps of one run."""

    steps: list[StepRecord]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"steps": [s.to_dict() for s in self.steps]}

    def write_json(self, path: str | Path) -> None:
        """Write ``report.json``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))

    def rows(self) -> list[dict[str, str]]:
        """One formatted row per step, shared by the terminal table and the Markdown."""
        return [_row(step) for step in self.steps]

    def table(self) -> str:
        """A plain-text table, one row per step."""
        rows = self.rows()
        if not rows:
            return ""
        headers = list(rows[0])
        widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
        lines = ["  ".join(h.ljust(widths[h]) for h in headers)]
        lines += ["  ".join(r[h].ljust(widths[h]) for h in headers) for r in rows]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A Markdown table plus each step's notes."""
        rows = self.rows()
        headers = list(rows[0]) if rows else []
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(r[h] for h in headers) + " |" for r in rows]
        for step in self.steps:
            if step.notes:
                lines += ["", f"### {step.pass_name}", *[f"- {n}" for n in step.notes]]
        return "\n".join(lines) + "\n"


def _row(step: StepRecord) -> dict[str, str]:
    lat = step.latency
    return {
        "step": step.pass_name + ("" if step.status in ("input", "kept") else f" ({step.status})"),
        "size MB": f"{step.size_bytes / 1e6:.3f}",
        "params": f"{step.params:,}",
        "nodes": str(step.nodes),
        "latency ms": f"{lat.median_ms:.3f}" if lat else "-",
        "speedup": f"{step.speedup:.2f}x" if step.speedup else "-",
        "max abs err": f"{step.fidelity.max_abs_err:.2e}" if step.fidelity else "-",
        "cosine": f"{step.fidelity.cosine:.6f}" if step.fidelity else "-",
        "accuracy": f"{step.accuracy:.4f}" if step.accuracy is not None else "-",
        "seconds": f"{step.seconds:.2f}",
    }


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return str(value)
