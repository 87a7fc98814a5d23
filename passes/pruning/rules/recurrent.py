"""LSTM: a hidden unit is a row of each of the four gate blocks of W and R, a column of R, an entry of each of B's
eight blocks and P's three, and a feature of Y, Y_h, Y_c and the initial states; X's features contract with W's
columns. A bidirectional LSTM's two directions keep the same units (they share Y's feature axis); the direction,
time and batch axes are no channels. ``hidden_size`` is rewritten after a removal.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.values import input_at, rank_or_zero

GATES = 4  # W's and R's blocks (input, output, forget, cell); B holds W's and R's biases, P three peepholes
RECURRENT = 2  # R's input: the hidden state


class LstmRule(Rule):
    """Couple each hidden unit's rows, columns and features across the weights, states and outputs."""

    ops = ("LSTM",)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, w, r = node.inputs[0], node.inputs[1], node.inputs[RECURRENT]
        hidden = node.attributes.get_int("hidden_size", 0)
        if node.attributes.get_int("layout", 0) != 0:
            raise Refused("batch-first layout (layout=1)")
        if rank_or_zero(w) != 3 or rank_or_zero(r) != 3 or not hidden:
            raise Refused("weights of unknown rank or no hidden_size")
        c.contract(x, 2, w, 2)
        blocks = {input_at(node, 1): GATES, r: GATES, input_at(node, 3): 2 * GATES, input_at(node, 7): 3}
        for value, count in blocks.items():
            if value is not None:
                c.mapped(value, 1, r, 2, np.arange(count * hidden) % hidden)
        outputs = [(value, axis) for value, axis in zip(node.outputs, (3, 2, 2)) if rank_or_zero(value) > axis]
        states = [(value, 2) for value in (input_at(node, 5), input_at(node, 6)) if rank_or_zero(value) > 2]
        for index, (value, axis) in enumerate(outputs + states):
            if index == 0:  # R's columns read the hidden state (what Y holds): a unit whose column is zero is unread here
                c.contract(value, axis, r, 2)
            else:
                c.same(value, axis, r, 2)

    def rewrite(self, node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
        gone = len(removed.get((id(node.inputs[RECURRENT]), 2), []))
        if gone:
            node.attributes["hidden_size"] = ir.AttrInt64("hidden_size", node.attributes.get_int("hidden_size") - gone)
