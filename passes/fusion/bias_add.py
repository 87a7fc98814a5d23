"""A bias added after Conv or MatMul → the op's own bias input (Conv bias, or Gemm for 2-D MatMul).

Ours rather than onnxscript's ``matmul_add_to_gemm_rule``, which checks only the ranks of A and B:
an ``Add`` whose bias broadcasts to more than ``[M, N]`` (or a Conv bias shaped ``[C, 1, 1]`` on a
1-D conv) changes the output shape, and these checks refuse that.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxcompress.passes.fusion._conv_operand import per_channel_problem
from onnxcompress.passes.values import FLOAT_TYPES, channel_vector, constant, rank, static_shape

NAME = "bias-add"
MIN_OPSET = 7
TRIGGER_OPS = frozenset({"Conv", "MatMul"})


class ConvBiasAdd(pattern.RewriteRuleClassBase):
    """``Add(Conv(x, W[, b]), B)`` with B one value per output channel → ``Conv(x, W, b + B)``."""

    def pattern(self, op, x, w, bias):
        return op.Add(op.Conv(x, w, _allow_other_inputs=True, _outputs=["conv_out"]), bias)

    def check(self, context, x, w, bias, conv_out, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        problem = per_channel_problem(w, bias, conv_out, "added bias")
        return result.fail(problem) if problem else result

    def rewrite(self, op, x, w, bias, conv_out, **_):
        conv = conv_out.producer()
        weights = constant(w)
        total = channel_vector(constant(bias), weights.ndim, weights.shape[0])
        if len(conv.inputs) > 2 and conv.inputs[2] is not None:
            total = total + constant(conv.inputs[2])
        fused = op.initializer(ir.tensor(total.astype(weights.dtype)), name=f"{w.name}_fused_bias")
        return op.Conv(x, w, fused, **conv.attributes)


class MatMulAddToGemm(pattern.RewriteRuleClassBase):
    """``Add(MatMul(A, B), C)`` with 2-D A and B and C broadcastable to ``[M, N]`` → ``Gemm(A, B, C)``."""

    def pattern(self, op, a, b, c):
        return op.Add(op.MatMul(a, b), c)

    def check(self, context, a, b, c, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if rank(a) != 2 or rank(b) != 2:
            return result.fail("Gemm needs 2-D A and B")
        if a.dtype not in FLOAT_TYPES:
            return result.fail(f"dtype {a.dtype} is not a float type")
        c_shape, out_shape = static_shape(c), (a.shape[0], b.shape[1])
        if c_shape is None or len(c_shape) > 2:
            return result.fail("C is not of static rank <= 2")
        if not all(dim == 1 or dim == out for dim, out in zip(reversed(c_shape), reversed(out_shape))):
            return result.fail(f"C of shape {c_shape} would broadcast the [M, N] result")
        return result

    def rewrite(self, op, a, b, c, **_):
        return op.Gemm(a, b, c)


RULES = [ConvBiasAdd.rule(), MatMulAddToGemm.rule()]
