"""Fixtures of the pass tests: a small graph named as a PyTorch export names its nodes."""

from __future__ import annotations

import onnx_ir as ir
import pytest

# Conv → BatchNormalization → per-channel Add → Relu, then a 2-D MatMul + Add: three fusions, one node left alone.
CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 4, 4] x, float[1, 3] t) => (float[1, 3, 4, 4] y, float[1, 2] z)
  <float[3, 2, 1, 1] w = {1, 2, 3, 4, 5, 6}, float[3] s = {1.5, 0.5, 2.0}, float[3] b = {0.1, -0.2, 0.3},
   float[3] m = {0.05, 0.1, -0.1}, float[3] v = {0.9, 1.1, 0.7}, float[3, 1, 1] a = {0.5, -1, 2},
   float[3, 2] u = {1, 2, 3, 4, 5, 6}, float[2] c = {0.5, -0.5}> {
    conv = Conv(x, w)
    bn = BatchNormalization(conv, s, b, m, v)
    added = Add(bn, a)
    y = Relu(added)
    mm = MatMul(t, u)
    z = Add(mm, c)
}
"""
EXPORTED = ["/stem/stem.0/Conv", "/stem/stem.1/BatchNormalization", "/stem/Add", "/stem/stem.2/Relu", "/fc/MatMul", "/fc/Add"]


def _exported_chain() -> ir.Model:
    model = ir.from_onnx_text(CHAIN)
    for node, name in zip(model.graph, EXPORTED):
        node.name = name
    return model


@pytest.fixture
def exported_chain():
    """``exported_chain()``: ``CHAIN`` (Conv, BN, bias Add, Relu; MatMul, Add) with the node names a PyTorch export gives."""
    return _exported_chain
