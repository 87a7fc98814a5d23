"""What both per-channel rules after a Conv check (``conv_scale``, ``bias_add``): a constant applied to its output
that amounts to one value per output channel, beside constant weights and bias."""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress.passes.values import channel_vector, constant


def per_channel_problem(w: ir.Value, operand: ir.Value, conv_out: ir.Value, what: str) -> str | None:
    """Why ``operand`` (the ``what`` applied to ``conv_out = Conv(x, w[, b])``) cannot go into the conv's weights or
    bias, or None when it can."""
    weights, values = constant(w), constant(operand)
    if weights is None or values is None:
        return f"weights or {what} are not constants"
    if values.dtype != weights.dtype:
        return f"{what} dtype differs from the weights'"
    if channel_vector(values, weights.ndim, weights.shape[0]) is None:
        return f"{what} of shape {values.shape} is not one value per output channel"
    conv = conv_out.producer()
    if len(conv.inputs) > 2 and conv.inputs[2] is not None and constant(conv.inputs[2]) is None:
        return "the conv's own bias is not a constant"
    return None
