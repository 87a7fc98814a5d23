"""PNG charts of a run's report (size, latency, fidelity per step) and of a recipe comparison.

matplotlib is the optional ``plot`` extra: it is imported only here, only when a chart is asked
for, with the non-interactive Agg backend; without it the caller gets a one-line ``UsageError``.
"""

from __future__ import annotations

import io as io_module
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from onnxcompress import io
from onnxcompress.errors import UsageError

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxcompress.records import Outcome, RunRecord


def plot_report(report: RunRecord, path: str | os.PathLike, *, inputs: Iterable[ir.Model] = ()) -> Path:
    """Three bar charts side by side, one bar per step: size (MB), median latency (ms), cosine (a PNG at ``path``)."""
    plt = _pyplot()
    labels = [f"{i}. {s.pass_name}" + ("" if s.status in ("input", "kept") else " (rolled back)") for i, s in enumerate(report.steps)]
    panels = [
        ("size (MB)", [s.size_bytes / 1e6 for s in report.steps]),
        ("median latency (ms)", [s.latency.median_ms if s.latency else 0.0 for s in report.steps]),
        ("cosine vs input", [s.fidelity.cosine if s.fidelity else 0.0 for s in report.steps]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 0.5 * len(labels) + 2))
    for ax, (title, values) in zip(axes, panels):
        ax.barh(labels, values, color="tab:blue")
        ax.set_title(title)
        ax.invert_yaxis()
    return _save(fig, plt, path, inputs)


def plot_tradeoff(
    outcomes: Sequence[Outcome], path: str | os.PathLike, *, quality_label: str = "cosine vs input", inputs: Iterable[ir.Model] = ()
) -> Path:
    """Latency against size, one labelled point per recipe; Pareto-best points drawn filled."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for o in outcomes:
        ax.scatter(o.size_bytes / 1e6, o.latency_ms, s=80, marker="o" if o.pareto else "x", color="tab:green" if o.pareto else "tab:gray")
        ax.annotate(f"{o.name}\n{quality_label} {o.quality:.4f}", (o.size_bytes / 1e6, o.latency_ms), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("size (MB)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("trade-off (filled green: Pareto-best)")
    return _save(fig, plt, path, inputs)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib: pip install 'onnxcompress[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: str | os.PathLike, inputs: Iterable[ir.Model]) -> Path:
    """Render ``fig`` to PNG bytes and write them with ``io.write_bytes`` (never over the files of ``inputs``)."""
    png = io_module.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(png, format="png", dpi=100)
    finally:
        plt.close(fig)
    return io.write_bytes(path, png.getvalue(), inputs=inputs)


def available() -> bool:
    """True when matplotlib is installed (``run --report`` then adds report.png)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None
