"""Gemm and MatMul: contraction axes couple, output features couple to weight columns.

MatMul follows numpy semantics for any operands (a weight, or two activations as in attention):
batch axes broadcast, A's last axis contracts with B's second-to-last, and the output takes A's
rows and B's columns. Gemm honours ``transA``/``transB`` and a bias ``C`` broadcast over rows.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.pruning.rules.elementwise import couple_broadcast
from onnxcompress.passes.values import rank_or_zero


class GemmRule(Rule):
    """Y[m, n] = A[m, k]·B[k, n] + C: k couples A and B, n couples Y, B and C."""

    ops = ("Gemm",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        a, b = node.inputs[0], node.inputs[1]
        y = node.outputs[0]
        if rank_or_zero(a) != 2 or rank_or_zero(b) != 2 or rank_or_zero(y) != 2:
            raise Refused("operand ranks unknown")
        a_rows, a_k = (1, 0) if node.attributes.get_int("transA", 0) else (0, 1)
        b_k, b_cols = (1, 0) if node.attributes.get_int("transB", 0) else (0, 1)
        c.same(a, a_rows, y, 0)
        c.contract(a, a_k, b, b_k)
        c.same(b, b_cols, y, 1)
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if bias is not None:
            couple_broadcast(c, bias, y)


class MatMulRule(Rule):
    """Y[..., m, n] = A[..., m, k]·B[..., k, n] with broadcast batch axes."""

    ops = ("MatMul",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        a, b = node.inputs
        y = node.outputs[0]
        ra, rb, ry = rank_or_zero(a), rank_or_zero(b), rank_or_zero(y)
        if ra < 2 or rb < 2 or ry != max(ra, rb):
            raise Refused("operands are not matrices of known rank")
        c.contract(a, ra - 1, b, rb - 2)
        c.same(a, ra - 2, y, ry - 2)
        c.same(b, rb - 1, y, ry - 1)
        for value, r in ((a, ra), (b, rb)):
            for axis in range(r - 2):
                _couple_batch_axis(c, value, axis, y, axis + ry - r)


def _couple_batch_axis(c: Coupler, value: ir.Value, axis: int, y: ir.Value, y_axis: int) -> None:
    if value.shape[axis] == 1 and y.shape[y_axis] != 1:
        c.handle(value, axis)
    else:
        c.same(value, axis, y, y_axis)
