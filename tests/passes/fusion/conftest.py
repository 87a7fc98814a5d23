"""Fusion tests: fuse a graph written as ONNX text and return it beside the original."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from onnxcompress import io
from onnxcompress.passes import Fuse


@pytest.fixture
def fused():
    """``fused(text) -> (before, after, pass)``: the model parsed from ONNX text, and a fused copy."""

    def fuse(text: str) -> tuple[ir.Model, ir.Model, Fuse]:
        before = ir.from_onnx_text(text)
        after = io.clone(before)
        fuse_pass = Fuse()
        fuse_pass(after)
        return before, after, fuse_pass

    return fuse

