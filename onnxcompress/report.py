"""The record of a pipeline run: one ``StepRecord`` per step, the input model first."""

from __future__ import annotations

import dataclasses
import json
import math
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

    def to_json(self) -> str:
        """Strict JSON text: non-finite numbers (an exact pass's inf error, a NaN) become null."""
        return json.dumps(_finite(self.to_dict()), indent=2, allow_nan=False, default=_json_default)

    def write_json(self, path: str | Path) -> None:
        """Write ``report.json``."""
        Path(path).write_text(self.to_json())

    def write(self, folder: str | Path, *, plot: bool = True) -> list[Path]:
        """Write report.json, report.md and (with ``plot``) report.png into ``folder``; return the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / "report.json", folder / "report.md"]
        self.write_json(written[0])
        written[1].write_text(self.to_markdown())
        if plot:
            from onnxcompress.plot import plot_report

            written.append(plot_report(self, folder / "report.png"))
        return written

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
        for index, step in enumerate(self.steps):
            if step.notes or step.options:
                options = ", ".join(f"{k}={v}" for k, v in step.options.items())
                lines += ["", f"### {index}. {step.pass_name}" + (f" ({options})" if options else "")]
                lines += [f"- {n}" for n in step.notes]
        return "\n".join(lines) + "\n"


def _row(step: StepRecord) -> dict[str, str]:
    lat = step.latency
    return {
        "step": step.pass_name + ("" if step.status in ("input", "kept") else f" ({step.status})"),
        "size MB": f"{step.size_bytes / 1e6:.3f}",
        "params": f"{step.params:,}",
        "nodes": str(step.nodes),
        "latency ms": f"{lat.median_ms:.3f}" if lat else "-",
        "p10-p90 ms": f"{lat.p10_ms:.3f}-{lat.p90_ms:.3f}" if lat else "-",
        "speedup": f"{step.speedup:.2f}x" if step.speedup else "-",
        "max abs err": f"{step.fidelity.max_abs_err:.2e}" if step.fidelity else "-",
        "cosine": f"{step.fidelity.cosine:.6f}" if step.fidelity else "-",
        "accuracy": f"{step.accuracy:.4f}" if step.accuracy is not None else "-",
        "seconds": f"{step.seconds:.2f}",
    }


def _finite(value: Any) -> Any:
    """``value`` with every NaN/inf float (also numpy scalars) replaced by None, recursively."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return str(value)
