"""Charts: a titled report chart (kinds told apart, latency spread and speedup, 1 − cosine on a log axis), a
trade-off whose labels never overprint, a PNG for each, and a missing matplotlib as one clear line."""

from __future__ import annotations

import builtins
import itertools

import pytest
from matplotlib.text import Text

from onnxcompress import plot
from onnxcompress.bench import Latency
from onnxcompress.compare import Outcome
from onnxcompress.errors import UsageError
from onnxcompress.fidelity import Fidelity, OutputFidelity
from onnxcompress.provenance import Provenance
from onnxcompress.report import Report, StepRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report() -> Report:
    return Report([StepRecord("input", {}, "input", 2000, 10, 3, {}), StepRecord("x", {}, "rolled back", 1000, 5, 3, {})])


def _fidelity(cosine: float) -> Fidelity:
    return Fidelity([OutputFidelity("y", 1.0 - cosine, 1.0, cosine, True)])


def _latency(ms: float, clean: bool = True) -> Latency:
    return Latency(ms, ms * 0.8, ms * 1.3, runs=10, rounds_kept=2 if clean else 0, rounds_dropped=1, batch=1, threads=2)


def _provenance(path: str | None = "/models/resnet.onnx") -> Provenance:
    return Provenance("2026-01-02T03:04:05+00:00", {"onnxcompress": "9.9", "onnxruntime": "1.2"}, "Linux", "Some CPU", "avx2", 2,
                      None, [], path, None, [])


def _run() -> Report:
    steps = [
        StepRecord("input", {}, "input", 4_000_000, 10, 3, {}, latency=_latency(2.0), speedup=1.0, fidelity=_fidelity(1.0)),
        StepRecord("fuse", {}, "kept", 4_000_000, 10, 2, {}, fidelity=_fidelity(1.0), exact=True),
        StepRecord("quantize-dynamic", {}, "kept", 1_000_000, 10, 2, {}, latency=_latency(1.0, clean=False), speedup=2.0,
                   fidelity=_fidelity(0.99996), exact=False),
        StepRecord("prune-channels", {}, "rolled back", 900_000, 8, 2, {}, fidelity=_fidelity(0.9), exact=False),
    ]
    return Report(steps, _provenance())


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_report_chart_is_titled_with_the_model_and_its_chain():
    report = _run()
    fig = plot.report_figure(report)
    assert fig.get_suptitle() == plot.report_title(report) == "resnet.onnx: fuse → quantize-dynamic → prune-channels"
    assert any(t.get_text().startswith("onnxcompress 9.9, onnxruntime 1.2 · Some CPU (int8: avx2)") for t in fig.texts)
    assert plot.report_title(_report()) == "model: x"


def test_fidelity_is_one_minus_cosine_on_a_log_axis_with_exact_steps_at_the_floor():
    axes = plot.report_figure(_run()).axes
    fidelity = axes[2]
    assert fidelity.get_xscale() == "log"
    widths = [patch.get_width() for patch in fidelity.patches]
    assert widths[:3] == pytest.approx([plot.FIDELITY_FLOOR, plot.FIDELITY_FLOOR, 4e-5], rel=1e-3) and widths[3] == pytest.approx(0.1)
    assert _texts(fidelity)[:3] == ["reference", f"= input (below {plot.FIDELITY_FLOOR:.0e})", "cosine 0.999960"]


def test_latency_shows_its_spread_the_speedup_and_what_was_not_timed():
    latency = plot.report_figure(_run()).axes[1]
    assert _texts(latency) == ["2 ms, 1.00x", "not timed", "1 ms, 2.00x (noisy)", "not timed"]
    caps = [line for container in latency.containers if hasattr(container, "lines") for line in container.lines[1]]
    assert sorted(round(x, 6) for cap in caps for x in cap.get_xdata() if x) == [0.8, 1.3, 1.6, 2.6]


def test_kinds_of_step_are_told_apart_in_colour_and_legend():
    fig = plot.report_figure(_run())
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["input", "exact pass", "lossy pass", "rolled back"]
    colours = [patch.get_facecolor() for patch in fig.axes[0].patches]
    assert len(set(colours)) == 4 and fig.axes[0].patches[3].get_hatch() == "//"


def test_a_recipes_stages_are_drawn_as_models_and_titled_by_the_first():
    stages = Report([StepRecord("teacher", {}, "input", 2000, 10, 3, {}), StepRecord("student (distilled)", {}, "kept", 200, 1, 3, {})])
    assert [t.get_text() for t in plot.report_figure(stages).legends[0].get_texts()] == ["input", "model stage"]
    assert plot.report_title(stages) == "teacher: student (distilled)"


def test_report_plot_is_a_png(tmp_path):
    path = plot.plot_report(_run(), tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_tradeoff_labels_never_overlap_even_for_coincident_points():
    outcomes = [Outcome(name, 2_000_000, 2.0, 1.0, pareto=i == 0) for i, name in enumerate(["input", "fold-constants", "cleanup", "fuse"])]
    outcomes += [Outcome("quantize-dynamic", 500_000, 1.99, 0.9999, speedup=1.01, pareto=True)]
    fig = plot.tradeoff_figure(outcomes, title="m.onnx: 4 recipes", provenance=_provenance())
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes = [Text.get_window_extent(t) for t in ax.texts]  # the text alone, without its leader line
    assert len(boxes) == len(outcomes)
    assert not [(a, b) for a, b in itertools.combinations(range(len(boxes)), 2) if boxes[a].overlaps(boxes[b])]
    assert fig.get_suptitle() == "m.onnx: 4 recipes"
    assert sorted(_texts(ax))[0] == "cleanup\n1.00x, cosine vs input 1.000000"


def test_tradeoff_plot_is_a_png(tmp_path):
    outcomes = [Outcome("input", 2000, 2.0, 1.0, pareto=True), Outcome("fuse", 2000, 3.0, 1.0)]
    assert plot.plot_tradeoff(outcomes, tmp_path / "t.png").read_bytes()[:8] == PNG_SIGNATURE


def test_unwritable_plot_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"^cannot write .*r\.png: folder .*missing does not exist$"):
        plot.plot_report(_report(), tmp_path / "missing" / "r.png")


def test_missing_matplotlib_is_one_line(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(UsageError, match=r"^chart not drawn: matplotlib is not installed \(pip install 'onnxcompress\[plot\]'\)$"):
        plot.plot_report(_report(), tmp_path / "r.png")
