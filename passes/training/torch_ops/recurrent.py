"""ONNX's LSTM, GRU and RNN as loops over time steps in torch: what lets ``recover`` train a recurrent model's weights.

Gates in ONNX's order (LSTM: input, output, forget, cell; GRU: update, reset, hidden) with the default activations
(sigmoid and tanh), an LSTM's peepholes, a GRU's ``linear_before_reset``, forward, reverse or both directions,
sequence-first or batch-first (``layout``). Sequence lengths shorter than the input, other activations, ``clip`` and
``input_forget`` are declined in one line.
"""

from __future__ import annotations

import torch

from onnxcompress.passes.training.torch_ops.attributes import attr_int
from onnxcompress.passes.training.untrainable import untrainable

DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def lstm(node, opset, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None):
    """``Y [T, D, N, H]``, ``Y_h [D, N, H]`` and ``Y_c [D, N, H]`` (batch first with ``layout=1``)."""
    return _recurrent(node, x, w, r, b, sequence_lens, (initial_h, initial_c), p)


def gru(node, opset, x, w, r, b=None, sequence_lens=None, initial_h=None):
    """``Y [T, D, N, H]`` and ``Y_h [D, N, H]`` (batch first with ``layout=1``)."""
    return _recurrent(node, x, w, r, b, sequence_lens, (initial_h,))


def rnn(node, opset, x, w, r, b=None, sequence_lens=None, initial_h=None):
    """``Y [T, D, N, H]`` and ``Y_h [D, N, H]`` (batch first with ``layout=1``)."""
    return _recurrent(node, x, w, r, b, sequence_lens, (initial_h,))


def _recurrent(node, x, w, r, b, sequence_lens, initial, p=None):
    """Every direction of ``node`` run over ``x``: its outputs, each state's last value after ``Y``."""
    _decline_variants(node, x, sequence_lens)
    batch_first = attr_int(node, "layout", 0) == 1
    if batch_first:
        x = x.transpose(0, 1)
        initial = tuple(None if s is None else s.transpose(0, 1) for s in initial)
    gates, hidden = GATES[node.op_type], w.shape[1] // GATES[node.op_type]
    cell = {"LSTM": _lstm_cell, "GRU": _gru_cell, "RNN": _rnn_cell}[node.op_type]
    ys, lasts = [], []
    for d, backwards in enumerate(_directions(node)):
        weights = (w[d], r[d], None if b is None else b[d].split(gates * hidden), None if p is None else p[d].split(hidden))
        states = tuple(x.new_zeros(x.shape[1], hidden) if s is None else s[d] for s in initial)
        steps = []
        for t in reversed(range(x.shape[0])) if backwards else range(x.shape[0]):
            states = cell(node, x[t], states, *weights)
            steps.append(states[0])
        ys.append(torch.stack(steps[::-1] if backwards else steps))
        lasts.append(states)
    y = torch.stack(ys, 1)
    finals = [torch.stack(final) for final in zip(*lasts)]
    if batch_first:
        return (y.permute(2, 0, 1, 3), *(final.transpose(0, 1) for final in finals))
    return (y, *finals)


def _lstm_cell(node, x, states, w, r, bias, peep):
    h, c = states
    gates = x @ w.T + h @ r.T + (0 if bias is None else bias[0] + bias[1])
    i, o, f, g = gates.chunk(4, dim=-1)
    if peep is not None:
        i, f = i + peep[0] * c, f + peep[2] * c
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    o = o if peep is None else o + peep[1] * c
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_cell(node, x, states, w, r, bias, peep):
    (h,) = states
    wz, wr, wh = (x @ w.T + (0 if bias is None else bias[0])).chunk(3, dim=-1)
    rb = (0, 0, 0) if bias is None else bias[1].chunk(3)
    rz, rr, rh = r.chunk(3)
    z, reset = torch.sigmoid(wz + h @ rz.T + rb[0]), torch.sigmoid(wr + h @ rr.T + rb[1])
    if attr_int(node, "linear_before_reset", 0):
        candidate = torch.tanh(wh + reset * (h @ rh.T + rb[2]))
    else:
        candidate = torch.tanh(wh + (reset * h) @ rh.T + rb[2])
    return ((1 - z) * candidate + z * h,)


def _rnn_cell(node, x, states, w, r, bias, peep):
    (h,) = states
    return (torch.tanh(x @ w.T + h @ r.T + (0 if bias is None else bias[0] + bias[1])),)


def _directions(node) -> list[bool]:
    """Whether each direction runs backwards in time."""
    direction = node.attributes["direction"].as_string() if "direction" in node.attributes else "forward"
    return {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]


def _decline_variants(node, x, sequence_lens) -> None:
    activations = node.attributes["activations"].as_strings() if "activations" in node.attributes else None
    defaults = DEFAULT_ACTIVATIONS[node.op_type]
    if activations is not None and tuple(activations[: len(defaults)]) != defaults:
        raise untrainable(f"{node.op_type} with activations other than {' and '.join(sorted(set(defaults))).lower()} is not supported")
    if "clip" in node.attributes or attr_int(node, "input_forget", 0):
        raise untrainable(f"{node.op_type} with clip or input_forget is not supported")
    steps = x.shape[1 if attr_int(node, "layout", 0) else 0]
    if sequence_lens is not None and bool((sequence_lens != steps).any()):
        raise untrainable(f"{node.op_type} with sequence lengths shorter than its input is not supported")
