"""LSTM, GRU and RNN: a hidden unit is a row of each gate block of W and R, a column of R, an entry of each of B's
blocks (and an LSTM's three peepholes), and a feature of Y, Y_h (Y_c) and the initial states; X's features contract
with W's columns. A bidirectional layer's two directions keep the same units (they share Y's feature axis); the
direction, time and batch axes are no channels. ``hidden_size`` is rewritten after a removal.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import Coupler
from onnxcompress.passes.pruning.rules.base import Refused, Rule
from onnxcompress.passes.values import input_at, rank_or_zero

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}  # blocks of W and R; B holds W's and R's biases, an LSTM's P three peepholes
STATES = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}  # initial_h (and initial_c)
RECURRENT = 2  # R's input: the hidden state
PEEPHOLES = 7


class RecurrentRule(Rule):
    """Couple each hidden unit's rows, columns and features across the weights, states and outputs."""

    ops = tuple(GATES)

    def couple(self, node: ir.Node, c: Coupler) -> None:
        x, w, r = node.inputs[0], node.inputs[1], node.inputs[RECURRENT]
        hidden, gates = node.attributes.get_int("hidden_size", 0), GATES[node.op_type]
        if node.attributes.get_int("layout", 0) != 0:
            raise Refused("batch-first layout (layout=1)")
        if rank_or_zero(w) != 3 or rank_or_zero(r) != 3 or not hidden:
            raise Refused("weights of unknown rank or no hidden_size")
        c.contract(x, 2, w, 2)
        blocks = {w: gates, r: gates, input_at(node, 3): 2 * gates}
        if node.op_type == "LSTM":
            blocks[input_at(node, PEEPHOLES)] = 3
        for value, count in blocks.items():
            if value is not None:
                c.mapped(value, 1, r, 2, np.arange(count * hidden) % hidden)
        outputs = [(value, axis) for value, axis in zip(node.outputs, (3, 2, 2)) if rank_or_zero(value) > axis]
        states = [(value, 2) for value in (input_at(node, i) for i in STATES[node.op_type]) if rank_or_zero(value) > 2]
        for index, (value, axis) in enumerate(outputs + states):
            if index == 0:  # R's columns read the hidden state (what Y holds): a unit whose column is zero is unread here
                c.contract(value, axis, r, 2)
            else:
                c.same(value, axis, r, 2)

    def rewrite(self, node: ir.Node, removed: dict[tuple[int, int], list[int]]) -> None:
        gone = len(removed.get((id(node.inputs[RECURRENT]), 2), []))
        if gone:
            node.attributes["hidden_size"] = ir.AttrInt64("hidden_size", node.attributes.get_int("hidden_size") - gone)
