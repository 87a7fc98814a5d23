"""A pipeline run's record written out: strict JSON, Markdown, a plain table, and a folder with both and the chart.

Both files open with the run's provenance (``onnxcompress.provenance``). Without matplotlib the folder has no
chart, and report.md and the ``onnxcompress.report`` logger say so in one line with how to get it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxcompress import io, markdown
from onnxcompress import plot as plot_module
from onnxcompress.records import NOISY_NOTE, RunRecord, StepRecord, noisy

__all__ = ["Report", "StepRecord", "check_report_folder", "report_paths"]

LOGGER = logging.getLogger(__name__)


class Report(RunRecord):
    """A run's record (``RunRecord``) with the ways it is written: JSON, Markdown, a plain table, a folder."""

    def to_json(self) -> str:
        """Strict JSON text: non-finite numbers (an exact pass's inf error, a NaN) become null."""
        return json.dumps(_finite(self.to_dict()), indent=2, allow_nan=False, default=_json_default)

    def write_json(self, path: str | os.PathLike, *, inputs: Iterable[ir.Model] = ()) -> Path:
        """Write ``report.json`` (``io.write_bytes``: never over the files of ``inputs``)."""
        return io.write_bytes(path, self.to_json().encode(), inputs=inputs)

    def write(self, folder: str | os.PathLike, *, plot: bool = True, inputs: Iterable[ir.Model] = ()) -> list[Path]:
        """Write report.json, report.md and (with ``plot``, when matplotlib is installed) report.png into
        ``folder``; return the paths. A chart asked for and not drawn is said in report.md and logged."""
        draw = plot and plot_module.available()
        json_path, markdown_path, *png = report_paths(folder, plot=draw)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        chart = f"![size, latency and fidelity per step]({png[0].name})" if draw else f"> {plot_module.MISSING}" if plot else None
        if plot and not draw:
            LOGGER.warning(plot_module.MISSING)
        markdown_text = self.to_markdown(chart=chart).encode()
        written = [self.write_json(json_path, inputs=inputs), io.write_bytes(markdown_path, markdown_text, inputs=inputs)]
        if draw:
            written.append(plot_module.plot_report(self, png[0], inputs=inputs))
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

    def to_markdown(self, *, chart: str | None = None) -> str:
        """The provenance header, a Markdown table and each step's notes; ``chart``, a Markdown line under the
        header (the chart's image, or why there is none)."""
        rows = self.rows()
        lines = [f"# onnxcompress report: {self.model_name}", ""]
        if self.provenance:
            lines += [f"- {line}" for line in self.provenance.header()] + [""]
        if chart:
            lines += [chart, ""]
        lines += markdown.records_table(rows)
        if noisy(self.steps):
            lines += ["", f"**{NOISY_NOTE}**"]
        for index, step in enumerate(self.steps):
            if step.notes or step.options:
                options = ", ".join(f"{k}={v}" for k, v in step.options.items())
                lines += ["", f"### {index}. {step.pass_name}" + (f" ({options})" if options else "")]
                lines += [f"- {n}" for n in step.notes]
        return "\n".join(lines) + "\n"


def report_paths(folder: str | os.PathLike, *, plot: bool = True) -> list[Path]:
    """The files ``Report.write`` writes into ``folder``: report.json, report.md and, with ``plot``, report.png."""
    folder = Path(folder)
    return [folder / "report.json", folder / "report.md"] + ([folder / "report.png"] if plot else [])


def check_report_folder(folder: str | os.PathLike, *, plot: bool = True, inputs: Iterable[ir.Model] = ()) -> None:
    """Refuse before a run what ``Report.write`` would refuse after it (``io.check_output_path`` on each file).

    A folder that does not exist yet is created by ``Report.write``; there is nothing in it to check.
    """
    if Path(folder).is_dir():
        for path in report_paths(folder, plot=plot):
            io.check_output_path(path, inputs)


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
        "slice err": f"{step.fidelity.slice_error:.3g}" if step.fidelity else "-",
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
