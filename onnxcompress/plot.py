"""PNG charts of a run's report (size, latency, fidelity per step) and of a recipe comparison.

matplotlib is the optional ``plot`` extra: it is imported only here, only when a chart is asked
for, with the non-interactive Agg backend; without it the caller gets a one-line ``UsageError``
(``MISSING`` says how to install it; ``report.write`` says it in ``report.md`` instead of drawing).

Fidelity is drawn as 1 − cosine on a log axis, so 0.9999 and 1.0 are far apart; a step whose outputs
match the input's to float precision sits at ``FIDELITY_FLOOR``, labelled as such.
"""

from __future__ import annotations

import io as io_module
import os
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from onnxcompress import io
from onnxcompress.errors import UsageError

if TYPE_CHECKING:
    import onnx_ir as ir
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from onnxcompress.provenance import Provenance
    from onnxcompress.records import Outcome, RunRecord, StepRecord

MISSING = "chart not drawn: matplotlib is not installed (pip install 'onnxcompress[plot]')"
FIDELITY_FLOOR = 1e-9  # 1 - cosine below this is float rounding: drawn at the floor, marked "= input"
KIND_STYLES = {  # kind: (colour, hatch, legend text)
    "input": ("0.35", "", "input"),
    "exact": ("tab:blue", "", "exact pass"),
    "lossy": ("tab:orange", "", "lossy pass"),
    "stage": ("tab:purple", "", "model stage"),
    "rolled back": ("0.8", "//", "rolled back"),
}
TITLE_WIDTH = 110
LABEL_LINE_POINTS = 9.5  # height of one 7-point label line, in points


def plot_report(report: RunRecord, path: str | os.PathLike, *, inputs: Iterable[ir.Model] = ()) -> Path:
    """``report_figure`` as a PNG at ``path`` (never over the files of ``inputs``)."""
    plt = _pyplot()
    return _save(report_figure(report), plt, path, inputs)


def report_figure(report: RunRecord) -> Figure:
    """Three panels, one bar per step coloured by its kind: size, latency (median, p10–p90, speedup), 1 − cosine."""
    plt = _pyplot()
    steps = report.steps
    labels = [f"{i}. {s.pass_name}" for i, s in enumerate(steps)]
    styles = [KIND_STYLES[step_kind(s)] for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.45 * len(steps) + 2.6), sharey=True)
    _bars(axes[0], labels, [s.size_bytes / 1e6 for s in steps], styles)
    axes[0].set_title("size (MB)")
    for y, step in enumerate(steps):
        axes[0].annotate(f"{step.size_bytes / 1e6:.3g}", (step.size_bytes / 1e6, y), **_VALUE_TEXT)
    _latency_panel(axes[1], labels, steps, styles)
    _fidelity_panel(axes[2], labels, steps, styles)
    axes[0].invert_yaxis()
    for ax in axes[:2]:
        ax.locator_params(axis="x", nbins=4)
    present = dict.fromkeys(step_kind(s) for s in steps)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=KIND_STYLES[k][0], hatch=KIND_STYLES[k][1], edgecolor="0.3") for k in present]
    fig.legend(handles, [KIND_STYLES[k][2] for k in present], loc="upper right", ncol=len(present), fontsize=8, frameon=False)
    fig.suptitle(report_title(report), x=0.01, ha="left", fontsize=10)
    _footer(fig, report.provenance)
    fig.tight_layout(rect=(0, 0.04 if report.provenance else 0, 1, 0.93))
    return fig


def report_title(report: RunRecord) -> str:
    """The chart's title: the model's name and the chain of passes run on it (wrapped to fit)."""
    chain = " → ".join(s.pass_name for s in report.steps[1:]) or "no passes"
    return textwrap.fill(f"{report.model_name}: {chain}", TITLE_WIDTH)


def step_kind(step: StepRecord) -> str:
    """A ``KIND_STYLES`` key: the input, an exact or a lossy pass's kept step, a rolled-back step, or a recipe's stage
    (a whole model such as a distilled student, which no one pass made: it records no pass kind)."""
    if step.status in ("input", "rolled back"):
        return step.status
    return {True: "exact", False: "lossy", None: "stage"}[step.exact]


def plot_tradeoff(
    outcomes: Sequence[Outcome],
    path: str | os.PathLike,
    *,
    quality_label: str = "cosine vs input",
    title: str = "trade-off",
    provenance: Provenance | None = None,
    inputs: Iterable[ir.Model] = (),
) -> Path:
    """``tradeoff_figure`` as a PNG at ``path`` (never over the files of ``inputs``)."""
    plt = _pyplot()
    return _save(tradeoff_figure(outcomes, quality_label=quality_label, title=title, provenance=provenance), plt, path, inputs)


def tradeoff_figure(
    outcomes: Sequence[Outcome], *, quality_label: str = "cosine vs input", title: str = "trade-off", provenance: Provenance | None = None
) -> Figure:
    """Latency against size, one point per recipe (Pareto-best filled green), each labelled with its name, speedup
    and quality; labels are stacked so that none overprints another, joined to their point by a thin line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, max(5.0, 1.5 + 2 * len(outcomes) * LABEL_LINE_POINTS / 72 * 1.3)))
    for pareto, marker, colour, text in ((True, "o", "tab:green", "Pareto-best"), (False, "x", "tab:gray", "dominated")):
        chosen = [o for o in outcomes if o.pareto == pareto]
        if chosen:
            ax.scatter([o.size_bytes / 1e6 for o in chosen], [o.latency_ms for o in chosen], s=70, marker=marker, color=colour, label=text, zorder=3)
    ax.margins(x=0.35, y=0.15)
    ax.set_xlabel("size (MB)")
    ax.set_ylabel("median latency (ms)")
    ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(textwrap.fill(title, TITLE_WIDTH // 2 + 10), fontsize=10)
    _footer(fig, provenance)
    fig.tight_layout(rect=(0, 0.05 if provenance else 0, 1, 0.95))
    labels = [f"{o.name}\n{o.speedup:.2f}x, {quality_label} {o.quality:.6f}" for o in outcomes]
    _stacked_labels(ax, [(o.size_bytes / 1e6, o.latency_ms) for o in outcomes], labels)
    return fig


_VALUE_TEXT = {"xytext": (3, 0), "textcoords": "offset points", "va": "center", "fontsize": 7}


def _bars(ax: Axes, labels: list[str], values: list[float], styles, **kwargs) -> None:
    ax.barh(labels, values, color=[s[0] for s in styles], edgecolor="0.3", linewidth=0.5, **kwargs)
    for patch, style in zip(ax.patches, styles):
        patch.set_hatch(style[1])


def _latency_panel(ax: Axes, labels: list[str], steps: list[StepRecord], styles) -> None:
    """Median latency with its p10–p90 spread as an error bar, the speedup beside it; "not timed" where no figure."""
    medians = [s.latency.median_ms if s.latency else 0.0 for s in steps]
    low = [s.latency.median_ms - s.latency.p10_ms if s.latency else 0.0 for s in steps]
    high = [s.latency.p90_ms - s.latency.median_ms if s.latency else 0.0 for s in steps]
    _bars(ax, labels, medians, styles, xerr=[low, high], error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "0.1"})
    for y, step in enumerate(steps):
        lat = step.latency
        if lat is None:
            ax.annotate("not timed", (0, y), color="0.4", **_VALUE_TEXT)
            continue
        text = f"{lat.median_ms:.3g} ms" + (f", {step.speedup:.2f}x" if step.speedup else "") + ("" if lat.clean else " (noisy)")
        ax.annotate(text, (lat.p90_ms, y), color="black" if lat.clean else "tab:red", **_VALUE_TEXT)
    ax.set_title("median latency (ms), p10–p90, speedup vs input")
    ax.set_xlim(0, max([s.latency.p90_ms for s in steps if s.latency], default=1.0) * 1.45)


def _fidelity_panel(ax: Axes, labels: list[str], steps: list[StepRecord], styles) -> None:
    """1 − cosine against the input on a log axis; steps at the floor say they match the input."""
    gaps = [max(1.0 - s.fidelity.cosine, FIDELITY_FLOOR) if s.fidelity else FIDELITY_FLOOR for s in steps]
    _bars(ax, labels, gaps, styles)
    ax.set_xscale("log")
    ax.set_xlim(FIDELITY_FLOOR, max(max(gaps) * 30, 1e-6))
    ax.axvline(FIDELITY_FLOOR, color="0.3", linewidth=1)
    for y, (step, gap) in enumerate(zip(steps, gaps)):
        if step.status == "input":
            text = "reference"
        elif step.fidelity is None:
            text = "not measured"
        elif gap <= FIDELITY_FLOOR:
            text = f"= input (below {FIDELITY_FLOOR:.0e})"
        else:
            text = f"cosine {step.fidelity.cosine:.6f}"
        ax.annotate(text, (gap, y), **_VALUE_TEXT)
    ax.set_title("1 − cosine vs input (log; lower is closer)")


def _footer(fig: Figure, provenance: Provenance | None) -> None:
    """One small line under the chart: version, CPU, threads and start time, so two charts can be compared."""
    if provenance is None:
        return
    version = provenance.versions.get("onnxcompress")
    ort = provenance.versions.get("onnxruntime")
    text = f"onnxcompress {version}, onnxruntime {ort} · {provenance.cpu} (int8: {provenance.cpu_int8}) · {provenance.threads} thread(s) · {provenance.started}"
    fig.text(0.01, 0.01, text, fontsize=7, color="0.35")


def _stacked_labels(ax: Axes, points: list[tuple[float, float]], labels: list[str]) -> None:
    """Annotate each point with its label, the labels stacked top to bottom in the points' order of height, each
    kept below the one before, so no two overprint however close their points are (layout must be final)."""
    if not points:
        return
    fig = ax.figure
    to_points = 72 / fig.dpi
    xmid = sum(ax.get_xlim()) / 2
    heights = [(label.count("\n") + 1) * LABEL_LINE_POINTS + 4 for label in labels]
    at = [ax.transData.transform(p)[1] * to_points for p in points]
    centres, floor = {}, float("inf")
    for i in sorted(range(len(points)), key=lambda i: -at[i]):
        top = min(at[i] + heights[i] / 2, floor)
        centres[i], floor = top - heights[i] / 2, top - heights[i]
    bottom, top = (y * to_points for y in ax.transAxes.transform([(0, 0), (0, 1)])[:, 1])
    lift = max(0.0, min(bottom - floor, top - max(centres[i] + heights[i] / 2 for i in centres)))  # back into the axes
    for i, centre in centres.items():
        left = points[i][0] <= xmid
        ax.annotate(
            labels[i], points[i], xytext=(14 if left else -14, centre + lift - at[i]), textcoords="offset points",
            ha="left" if left else "right", va="center", fontsize=7, annotation_clip=False,
            arrowprops={"arrowstyle": "-", "color": "0.5", "linewidth": 0.6, "shrinkA": 2, "shrinkB": 4, "relpos": (0 if left else 1, 0.5)},
        )


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError(MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: str | os.PathLike, inputs: Iterable[ir.Model]) -> Path:
    """Render ``fig`` (laid out already) to PNG bytes and write them with ``io.write_bytes`` (never over ``inputs``' files)."""
    png = io_module.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=100)
    finally:
        plt.close(fig)
    return io.write_bytes(path, png.getvalue(), inputs=inputs)


def available() -> bool:
    """True when matplotlib is installed (``report.write`` then adds report.png)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None
