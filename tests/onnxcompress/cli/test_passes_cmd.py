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
