"""ONNX Attention (opset 23+), as PyTorch's exporter writes ``scaled_dot_product_attention`` at opset 23.

With 4-D inputs ``Q [B, H, S, D]``, ``K [B, H, L, D]``, ``V [B, H, L, Dv]`` and ``Y [B, H, S, Dv]``, head h
of Q, K and V makes head h of Y alone: the head axis couples all four, as do the batch axes; the query
and key sequence axes couple Y with Q and V with K; the head size is contracted between Q and K (and
frozen when the default scale, 1/sqrt(D), would change with it); ``Dv`` couples V with Y. A mask
broadcast to ``[B, H, S, L]`` couples along the axes it spans. Refused: 3-D inputs (the heads hide in
the hidden axis, counted by ``q_num_heads``), a key/value cache, ``nonpad_kv_seqlen``, and a used
present key/value or QK output.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.values import rank_or_zero

CACHE_INPUTS = (4, 5, 6)  # past_key, past_value, nonpad_kv_seqlen


class AttentionRule(Rule):
    """Heads, batch and sequence axes couple across Q, K, V, Y and the mask."""

    ops = ("Attention",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        q, k, v = node.inputs[:3]
        y = node.outputs[0]
        _refuse_what_it_cannot_follow(node, q, k, v, y)
        for axis in (0, 1):  # batch, heads
            c.same(q, axis, y, axis)
            c.same(k, axis, y, axis)
            c.same(v, axis, y, axis)
        c.same(q, 2, y, 2)
        c.same(k, 2, v, 2)
        c.same(v, 3, y, 3)
        if node.attributes.get_float("scale", None) is None:
            c.freeze(q, 3, "head size sets the default scale 1/sqrt(D)")
            c.freeze(k, 3, "head size sets the default scale 1/sqrt(D)")
        else:
            c.contract(q, 3, k, 3)
        mask = node.inputs[3] if len(node.inputs) > 3 else None
        if mask is not None:
            _couple_mask(c, mask, (q, 0), (q, 1), (q, 2), (k, 2))


def _refuse_what_it_cannot_follow(node: ir.Node, q: ir.Value, k: ir.Value, v: ir.Value, y: ir.Value) -> None:
    if any(rank_or_zero(value) != 4 for value in (q, k, v, y)):
        raise Refused("inputs are not 4-D [batch, heads, sequence, size] (3-D inputs hide the heads in their hidden axis)")
    if any(index < len(node.inputs) and node.inputs[index] is not None for index in CACHE_INPUTS):
        raise Refused("a key/value cache or nonpad_kv_seqlen input")
    if any(output is not None and (output.uses() or output.is_graph_output()) for output in node.outputs[1:]):
        raise Refused("its present key/value or QK output is read")


def _couple_mask(c: Coupler, mask: ir.Value, *scores_axes: tuple[ir.Value, int]) -> None:
    """Couple the mask's axes, aligned right, with the scores' ``[B, H, S, L]`` axes they broadcast along."""
    rank = rank_or_zero(mask)
    if mask.shape is None or rank == 0:
        raise Refused("mask rank unknown")
    for axis in range(rank):
        value, target = scores_axes[len(scores_axes) - rank + axis]
        if mask.shape[axis] == 1:
            c.handle(mask, axis)
        else:
            c.same(mask, axis, value, target)
