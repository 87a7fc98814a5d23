"""Per-channel gates tiled to their map's shape: exact, and only where the map's spatial size is known."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.passes.quantization.support.channel_gate import tile_channel_gates

OPS = ["Mul", "Tile"]

GATE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4, 6, 6] x) => (float[N, 4, 6, 6] y)
{
    pooled = GlobalAveragePool (x)
    gate = Sigmoid (pooled)
    y = Mul ({order})
}
"""

DYNAMIC_MAP = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4, H, W] x) => (float[N, 4, H, W] y)
{
    pooled = GlobalAveragePool (x)
    gate = Sigmoid (pooled)
    y = Mul (x, gate)
}
"""

CONSTANT_SCALE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4, 6, 6] x) => (float[N, 4, 6, 6] y)
<float[1, 4, 1, 1] scale = {1.0, 2.0, 3.0, 4.0}>
{
    y = Mul (x, scale)
}
"""


def feeds() -> dict[str, np.ndarray]:
    """Three seeded 4×6×6 maps."""
    return {"x": np.random.default_rng(0).normal(size=(3, 4, 6, 6)).astype(np.float32)}


def test_gate_is_tiled_to_the_map_in_either_operand_order(assert_exact_rewrite) -> None:
    for order in ("x, gate", "gate, x"):
        before = ir.from_onnx_text(GATE.replace("{order}", order))
        after = io.clone(before)

        assert tile_channel_gates(after, OPS) == 1

        tile = next(n for n in after.graph if n.op_type == "Tile")
        assert tile.inputs[0].name == "gate"
        assert tile.inputs[1].const_value.numpy().tolist() == [1, 1, 6, 6]
        assert_exact_rewrite(before, after, feeds())


def test_unknown_spatial_size_constant_scales_and_unquantized_tiles_are_left_alone() -> None:
    for text, op_types in ((DYNAMIC_MAP, OPS), (CONSTANT_SCALE, OPS), (GATE.replace("{order}", "x, gate"), ["Mul"])):
        model = ir.from_onnx_text(text)
        assert tile_channel_gates(model, op_types) == 0
        assert "Tile" not in [n.op_type for n in model.graph]
