"""Charts: a PNG is written for a report and a trade-off; a missing matplotlib is one clear line."""

from __future__ import annotations

import builtins

import pytest

from onnxcompress import plot
from onnxcompress.compare import Outcome
from onnxcompress.errors import UsageError
from onnxcompress.report import Report, StepRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report() -> Report:
    return Report([StepRecord("input", {}, "input", 2000, 10, 3, {}), StepRecord("x", {}, "rolled back", 1000, 5, 3, {})])


def test_report_plot_is_a_png(tmp_path):
    path = plot.plot_report(_report(), tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


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
    with pytest.raises(UsageError, match=r"pip install 'onnxcompress\[plot\]'"):
        plot.plot_report(_report(), tmp_path / "r.png")
