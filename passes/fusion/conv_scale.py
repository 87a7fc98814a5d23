"""A per-channel scale multiplied after Conv → the Conv's weights and bias scaled.

A BatchNorm an exporter already folded to ``Mul`` and ``Add`` (tf2onnx writes Keras MobileNetV2's so, 17 of
them) no longer matches ``conv_bn``; scaling the weights here leaves ``Add(Conv(x, W'), B)``, which
``bias_add`` (the next family) takes into the bias. ONNX Runtime folds such a Mul at session start too, but
the quantizers see the graph as written: static INT8 put each Mul and Add through Q/DQ of its own.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxcompress.passes.fusion._conv_operand import per_channel_problem
from onnxcompress.passes.values import channel_vector, constant

NAME = "conv-scale"
MIN_OPSET = 7
TRIGGER_OPS = frozenset({"Conv"})


class ConvScale(pattern.RewriteRuleClassBase):
    """``Mul(Conv(x, W[, b]), S)`` with S one value per output channel → ``Conv(x, W·S, b·S)``."""

    def pattern(self, op, x, w, scale):
        return op.Mul(op.Conv(x, w, _allow_other_inputs=True, _outputs=["conv_out"]), scale)

    def check(self, context, x, w, scale, conv_out, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        problem = per_channel_problem(w, scale, conv_out, "scale")
        return result.fail(problem) if problem else result

    def rewrite(self, op, x, w, scale, conv_out, **_):
        conv = conv_out.producer()
        weights = constant(w)
        scales = channel_vector(constant(scale), weights.ndim, weights.shape[0])
        scaled = op.initializer(ir.tensor(weights * scales.reshape((-1,) + (1,) * (weights.ndim - 1))), name=f"{w.name}_scaled")
        if len(conv.inputs) > 2 and conv.inputs[2] is not None:
            bias = op.initializer(ir.tensor(constant(conv.inputs[2]) * scales), name=f"{conv.inputs[2].name}_scaled")
            return op.Conv(x, scaled, bias, **conv.attributes)
        return op.Conv(x, scaled, **conv.attributes)


RULES = [ConvScale.rule()]
