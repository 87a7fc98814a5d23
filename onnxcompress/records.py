"""What runs record, as plain data: a ``StepRecord`` per pipeline step, the ``RunRecord`` of a run's steps, and
an ``Outcome`` per recipe of a comparison.

The pipeline and ``compare`` fill them, ``report`` writes them (JSON, Markdown, a folder with the chart) and
``plot`` draws them; kept apart from all of these, so that each imports the records and none the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxcompress.bench import Latency
    from onnxcompress.fidelity import Fidelity
    from onnxcompress.provenance import Provenance


NOISY_NOTE = ("latency is rough: every timing round saw other processes using the CPU, "
              "so the speedups may be off by more than their spread (time again on a quiet machine)")


def noisy(steps: Sequence[StepRecord]) -> bool:
    """Whether any step's latency comes from noisy rounds only (``NOISY_NOTE`` then says so beside the figures)."""
    return any(step.latency is not None and not step.latency.clean for step in steps)


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
    exact: bool | None = None  # the pass's kind (exact or lossy); None for the input

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the design's field names."""
        return {
            "pass": self.pass_name,
            "options": self.options,
            "status": self.status,
            "exact": self.exact,
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
class RunRecord:
    """All the steps of one run, the input model first, and what produced them (None when not recorded)."""

    steps: list[StepRecord]
    provenance: Provenance | None = None

    @property
    def model_name(self) -> str:
        """The input file's name; without one, the first step's when it names the model (a recipe's "teacher"), else "model"."""
        path = self.provenance.input_path if self.provenance else None
        if path:
            return PurePath(path).name
        first = self.steps[0].pass_name if self.steps else "input"
        return first if first != "input" else "model"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, provenance first."""
        return {"provenance": self.provenance.to_dict() if self.provenance else None, "steps": [s.to_dict() for s in self.steps]}


@dataclasses.dataclass
class Outcome:
    """One recipe's result: size, latency, quality (cosine or accuracy) and Pareto membership."""

    name: str
    size_bytes: int
    latency_ms: float
    quality: float
    speedup: float = 1.0
    pareto: bool = False
    model: ir.Model | None = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready dict (without the model, which is never copied: ``dataclasses.asdict`` would deep-copy it)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "model"}
