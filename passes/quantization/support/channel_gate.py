"""A per-channel gate ``x · g`` (``g`` of shape ``[N, C, 1, 1]``, e.g. squeeze-excite) → ``x · Tile(g, [1, 1, H, W])``.

ORT runs quantized convs channels-last, so the gate's broadcast runs along the innermost axis, and
its QLinearMul then loops over one short span of C values per pixel. Tiling the small gate to the
full shape first (ORT runs Tile on the uint8 data, dropping the Q/DQ around it) lets the Mul run as
one same-shape span. Ours rather than Expand or Resize, which we measured first: ORT's layout
optimizer cannot move its transposes through Expand (Transposes are left around it) and its uint8
Resize is slower than the broadcast it replaces. Measured on the MobileNetV3-style net at 224x224,
batch 1, in the same rounds: 0.94x FP32 latency with the Tile, 1.06x without. Exact: only the
shape in which the gate reaches the Mul changes. Needs static H and W; the rest is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from onnxcompress.passes.values import constant
from onnxcompress.passes.initializers import add_initializer

NEEDS = frozenset({"Mul", "Tile"})


def tile_channel_gates(model: ir.Model, op_types: Sequence[str]) -> int:
    """Tile (in place) the ``[N, C, 1, 1]`` operand of every 4-D per-channel Mul; the number tiled.

    Runs only when ``op_types`` quantizes both Mul and Tile (a float Tile between Q/DQ would cost
    more than the broadcast it saves).
    """
    if not NEEDS <= set(op_types):
        return 0
    ShapeInferencePass(strict_mode=False)(model)
    tiled = 0
    for node in list(model.graph):
        if node.op_type == "Mul" and node.domain in ("", "ai.onnx") and (found := _gate(node)) is not None:
            index, repeats = found
            _tile_input(model.graph, node, index, repeats)
            tiled += 1
    return tiled


def _gate(mul: ir.Node) -> tuple[int, tuple[int, int]] | None:
    """(which input is the gate, its spatial repeats) when ``mul`` is a per-channel gate of a static map."""
    dims = [_channel_and_spatial(v) for v in mul.inputs]
    for index, other in ((0, 1), (1, 0)):
        gate, data = dims[index], dims[other]
        if gate is None or data is None or constant(mul.inputs[index]) is not None:
            continue
        if gate[1:] == (1, 1) and data[1:] != (1, 1) and gate[0] == data[0]:
            return index, data[1:]
    return None


def _channel_and_spatial(value: ir.Value | None) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of a 4-D value whose last three dimensions are known integers (the batch may be symbolic)."""
    if value is None or value.shape is None or len(value.shape) != 4:
        return None
    tail = tuple(value.shape)[1:]
    return tail if all(isinstance(d, int) for d in tail) else None


def _tile_input(graph: ir.Graph, mul: ir.Node, index: int, repeats: tuple[int, int]) -> None:
    """Insert ``Tile(input, [1, 1, H, W])`` before ``mul`` and feed it in place of that input."""
    name = mul.name or mul.outputs[0].name
    counts = add_initializer(graph, f"{name}_repeats", np.array([1, 1, *repeats], np.int64))
    tile = ir.node("Tile", [mul.inputs[index], counts], name=f"{name}_tile", outputs=[ir.Value(name=f"{name}_tile_output")])
    graph.insert_before(mul, tile)
    mul.replace_input_with(index, tile.outputs[0])
