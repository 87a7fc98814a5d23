"""A Reshape whose target shape copies dimensions of its own input through
``Shape → Gather → Unsqueeze → Concat`` → the same Reshape with a constant shape using ``0``
("copy this dimension"), so the whole shape chain becomes dead.

Ours: onnxscript's ``materialize_reshape_shape_rule`` needs the output shape with at most one
symbolic dimension, so it leaves every attention Reshape of a transformer exported with dynamic
batch *and* sequence (MiniLM: 51 Unsqueezes and 25 Concats left, 58 nodes more than onnxslim).
The dims are read from ``Shape`` of the Reshape's input or of a tensor ONNX shape inference proved
to share that dimension (same symbol).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxcompress.passes.values import constant, same_dim

NAME = "reshape-dims"
MIN_OPSET = 5
TRIGGER_OPS = frozenset({"Concat"})
COPY_DIM = 0


class ReshapeCopiedDims(pattern.RewriteRuleClassBase):
    """Replace a Concat of copied input dims and constants by one constant shape."""

    def pattern(self, op, data, shape):
        return op.Reshape(data, shape, _outputs=["reshaped"])

    def check(self, context, data, shape, reshaped, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if reshaped.producer().attributes.get_int("allowzero", 0) != 0:
            return result.fail("allowzero=1: a 0 in the shape would not copy the input dimension")
        if copied_dims_shape(data, shape) is None:
            return result.fail("the shape is not a Concat of constants and this input's own dims")
        return result

    def rewrite(self, op, data, shape, **_):
        dims = copied_dims_shape(data, shape)
        target = op.initializer(ir.tensor(np.asarray(dims, dtype=np.int64)), name=f"{shape.name}_constant")
        return op.Reshape(data, target)


def copied_dims_shape(data: ir.Value, shape: ir.Value) -> list[int] | None:
    """The shape as constants, with 0 for each dim copied from ``data`` at the same position."""
    concat = shape.producer()
    if concat is None or concat.op_type != "Concat" or concat.attributes.get_int("axis", 0) not in (0, -1):
        return None
    dims: list[int] = []
    for part in concat.inputs:
        known = constant(part)
        if known is not None and known.ndim == 1 and COPY_DIM not in known:
            dims.extend(int(d) for d in known)
        elif _copies_input_dim(part, data, len(dims)):
            dims.append(COPY_DIM)
        else:
            return None
    return dims if COPY_DIM in dims else None


def _copies_input_dim(value: ir.Value | None, data: ir.Value, position: int) -> bool:
    """True when ``value`` is ``Unsqueeze(Gather(Shape(source), position), [0])`` and ``source`` is
    ``data`` or a tensor whose dim there is the same (shape inference gave both the same symbol)."""
    unsqueeze = value.producer() if value is not None else None
    if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or _unsqueeze_axes(unsqueeze) != [0]:
        return False
    gather = unsqueeze.inputs[0].producer()
    if gather is None or gather.op_type != "Gather" or gather.attributes.get_int("axis", 0) != 0:
        return False
    index = constant(gather.inputs[1])
    if index is None or index.ndim != 0 or int(index) != position:
        return False
    shape_node = gather.inputs[0].producer()
    return (
        shape_node is not None
        and shape_node.op_type == "Shape"
        and shape_node.attributes.get_int("start", 0) == 0
        and "end" not in shape_node.attributes
        and _same_dim(shape_node.inputs[0], data, position)
    )


def _same_dim(source: ir.Value, data: ir.Value, position: int) -> bool:
    """True when ``source`` and ``data`` provably share dimension ``position``."""
    if source is data:
        return True
    if source.shape is None or data.shape is None or min(len(source.shape), len(data.shape)) <= position:
        return False
    return same_dim(source.shape[position], data.shape[position])


def _unsqueeze_axes(node: ir.Node) -> list[int] | None:
    """Unsqueeze's axes, from the attribute (opset < 13) or the constant input."""
    if "axes" in node.attributes:
        return list(node.attributes["axes"].as_ints())
    axes = constant(node.inputs[1]) if len(node.inputs) > 1 else None
    return None if axes is None else [int(a) for a in axes.ravel()]


RULES = [ReshapeCopiedDims.rule()]
