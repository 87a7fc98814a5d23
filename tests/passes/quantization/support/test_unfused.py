"""Counting the float layers ORT leaves between DequantizeLinear and QuantizeLinear."""

from __future__ import annotations

import onnx

from onnxcompress.passes.quantization.support.unfused import count_unfused, unfused_after_ort

# A QDQ graph whose middle op (Sin) has no integer kernel, next to a MatMul ORT can fuse.
ONE_UNFUSED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 4] x) => (float[2, 4] y)
<float s = {0.05}, uint8 z = {128}, int8[4, 4] wq = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, float ws = {0.1}, int8 wz = {0}>
{
    xq = QuantizeLinear (x, s, z)
    xd = DequantizeLinear (xq, s, z)
    w = DequantizeLinear (wq, ws, wz)
    m = MatMul (xd, w)
    mq = QuantizeLinear (m, s, z)
    md = DequantizeLinear (mq, s, z)
    t = Sin (md)
    tq = QuantizeLinear (t, s, z)
    y = DequantizeLinear (tq, s, z)
}
"""


def test_ort_leaves_exactly_the_sin_unfused() -> None:
    proto = onnx.parser.parse_model(ONE_UNFUSED)
    unfused = unfused_after_ort(proto)
    assert unfused.layers == {"Sin": 1}
    assert unfused.count == 1


def test_count_on_the_unoptimized_graph_sees_both_float_layers() -> None:
    graph = onnx.parser.parse_model(ONE_UNFUSED).graph
    assert count_unfused(graph).layers == {"MatMul": 1, "Sin": 1}
    assert count_unfused(graph).quantize_nodes == 3
