"""Fusion tests: fuse a graph written as ONNX text and return it beside the original."""

from __future__ import annotations

import pytest

from onnxcompress.passes import Fuse


@pytest.fixture
def fused(rewrite_text):
    """``fused(text) -> (before, after, pass)``: the model parsed from ONNX text, and a fused copy."""
    return lambda text: rewrite_text(Fuse(), text)

