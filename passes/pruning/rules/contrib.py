"""The com.microsoft ops ONNX Runtime's transformer optimizer writes, where heads and FFN neurons pass.

``Attention`` projects its input with one packed weight ``[in, Hq + Hk + Hv]`` (thirds unless
``qkv_hidden_sizes``) into ``num_heads`` heads; head h owns columns ``[h·d, (h+1)·d)`` of each section and
channels ``[h·dv, (h+1)·dv)`` of the output, so a head's columns and channels are one unit (the output's
channels are coupled with the rows of the projection after it by that MatMul's rule); removing heads keeps
the head size, so the default scale stays, and the rewrite lowers ``num_heads`` (and ``qkv_hidden_sizes``).
Refused: a past state, a read present output, rotary embeddings, Q and K sections of different sizes.
``BiasGelu`` and ``FastGelu`` add a bias over the FFN's neurons before the activation; ``Gelu`` and
``QuickGelu`` are elementwise.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.pruning.rules.elementwise import BroadcastRule, UnaryRule
from onnxcompress.passes.values import input_at, static_shape

CONTRIB = "com.microsoft"
PAST, ATTENTION_BIAS = 4, 5  # input positions


class ContribUnaryRule(UnaryRule):
    """com.microsoft Gelu and QuickGelu: elementwise."""

    domain = CONTRIB
    ops = ("Gelu", "QuickGelu")


class BiasActivationRule(BroadcastRule):
    """com.microsoft BiasGelu and FastGelu: ``f(x + bias)``, the bias broadcast over the last axis."""

    domain = CONTRIB
    ops = ("BiasGelu", "FastGelu")


class PackedAttentionRule(Rule):
    """com.microsoft Attention: its heads are units across the packed Q/K/V weight, its bias and its output."""

    domain = CONTRIB
    ops = ("Attention",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, weights, bias = input_at(node, 0), input_at(node, 1), input_at(node, 2)
        y = node.outputs[0]
        heads, (hq, hk, hv) = node.attributes.get_int("num_heads", 0), _sections(node, weights)
        _refuse_what_it_cannot_follow(node, heads, hq, hk, hv)
        c.same(x, 0, y, 0)
        c.same(x, 1, y, 1)
        c.contract(x, 2, weights, 0)
        if bias is not None:
            c.same(weights, 1, bias, 0)
        size, v_size = hq // heads, hv // heads
        column_heads = np.concatenate([np.arange(hq) // size, np.arange(hk) // size]) * v_size
        c.mapped(weights, 1, y, 2, np.concatenate([column_heads, np.arange(hv)]))
        c.mapped(y, 2, y, 2, np.arange(hv) // v_size * v_size)  # a head's output channels go together
        c.mark_heads(y, 2)
        attention_bias = input_at(node, ATTENTION_BIAS)
        if attention_bias is not None and static_shape(attention_bias) and static_shape(attention_bias)[1] == heads:
            c.mapped(attention_bias, 1, y, 2, np.arange(heads) * v_size)

    def rewrite(self, node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
        """Lower ``num_heads`` (and the sections of ``qkv_hidden_sizes``) by the heads removed."""
        heads, (hq, hk, hv) = node.attributes.get_int("num_heads", 0), _sections(node, input_at(node, 1))
        gone = len(removed.get((id(node.outputs[0]), 2), [])) // (hv // heads)
        if not gone:
            return
        left = heads - gone
        node.attributes["num_heads"] = ir.AttrInt64("num_heads", left)
        if "qkv_hidden_sizes" in node.attributes:
            node.attributes["qkv_hidden_sizes"] = ir.AttrInt64s("qkv_hidden_sizes", [s // heads * left for s in (hq, hk, hv)])


def _sections(node: ir.Node, weights: ir.Value) -> tuple[int, int, int]:
    """The Q, K and V widths of the packed weight: ``qkv_hidden_sizes``, or thirds of its columns."""
    sizes = node.attributes.get_ints("qkv_hidden_sizes", None)
    if sizes:
        return tuple(sizes)
    shape = static_shape(weights)
    if shape is None:
        raise Refused("packed weight shape unknown")
    return (shape[1] // 3,) * 3


def _refuse_what_it_cannot_follow(node: ir.Node, heads: int, hq: int, hk: int, hv: int) -> None:
    if input_at(node, PAST) is not None or any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
        raise Refused("a past state or a read present output")
    if node.attributes.get_int("do_rotary", 0):
        raise Refused("rotary embeddings")
    if heads <= 0 or hq != hk or any(s % heads for s in (hq, hk, hv)):
        raise Refused("Q and K sections differ, or a section is not a multiple of num_heads")
