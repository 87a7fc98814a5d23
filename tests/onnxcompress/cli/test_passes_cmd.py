"""``onnxcompress passes`` lists every registered pass with its kind and options."""

from __future__ import annotations

from onnxcompress.cli import main
from onnxcompress.passes import REGISTRY


def test_lists_every_registered_pass(capsys):
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert name in out
    line = next(line for line in out.splitlines() if "test-scale" in line)
    assert "lossy" in line and "factor=0.5 (float)" in line


def test_choices_are_shown_and_run_data_is_not_an_option(capsys):
    assert main(["passes"]) == 0
    lines = {line.split(" ", 1)[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "importance='magnitude' (magnitude|activation|mean_abs|apoz|taylor)" in lines["prune-channels"]
    assert "activation_scales='dynamic' (dynamic|calibrated)" in lines["quantize-dynamic"]
    for name in ("smooth", "scale-tokens", "split-outliers", "quantize-static", "quantize-dynamic", "prune-channels"):
        assert "calibration=" not in lines[name] and "labelled=" not in lines[name]
