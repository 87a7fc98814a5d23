"""ONNX's LSTM as a loop over time steps in torch: what lets ``recover`` train a recurrent model's weights.

Gates in ONNX's order (input, output, forget, cell) with the default activations (sigmoid, tanh, tanh), optional
peepholes, forward, reverse or both directions, sequence-first or batch-first (``layout``). Sequence lengths shorter
than the input, other activations, ``clip`` and ``input_forget`` are declined in one line.
"""

from __future__ import annotations

import torch

from onnxcompress.passes.training.torch_ops.attributes import attr_int
from onnxcompress.passes.training.untrainable import untrainable

DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")


def lstm(node, opset, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None):
    """``Y [T, D, N, H]``, ``Y_h [D, N, H]`` and ``Y_c [D, N, H]`` (batch first with ``layout=1``)."""
    _decline_variants(node, x, sequence_lens)
    batch_first = attr_int(node, "layout", 0) == 1
    if batch_first:
        x = x.transpose(0, 1)
        initial_h, initial_c = (None if s is None else s.transpose(0, 1) for s in (initial_h, initial_c))
    hidden = w.shape[1] // 4
    reverse = _directions(node)
    ys, hs, cs = [], [], []
    for d, backwards in enumerate(reverse):
        bias = None if b is None else b[d, : 4 * hidden] + b[d, 4 * hidden :]
        h = x.new_zeros(x.shape[1], hidden) if initial_h is None else initial_h[d]
        c = x.new_zeros(x.shape[1], hidden) if initial_c is None else initial_c[d]
        peep = None if p is None else p[d].split(hidden)
        steps = []
        for t in reversed(range(x.shape[0])) if backwards else range(x.shape[0]):
            h, c = _step(x[t], h, c, w[d], r[d], bias, peep)
            steps.append(h)
        ys.append(torch.stack(steps[::-1] if backwards else steps))
        hs.append(h)
        cs.append(c)
    y, y_h, y_c = torch.stack(ys, 1), torch.stack(hs), torch.stack(cs)
    if batch_first:
        return y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
    return y, y_h, y_c


def _step(x, h, c, w, r, bias, peep):
    """One time step of one direction: the next hidden and cell states."""
    gates = x @ w.T + h @ r.T + (0 if bias is None else bias)
    i, o, f, g = gates.chunk(4, dim=-1)
    if peep is not None:
        i, f = i + peep[0] * c, f + peep[2] * c
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    o = o if peep is None else o + peep[1] * c
    return torch.sigmoid(o) * torch.tanh(c), c


def _directions(node) -> list[bool]:
    """Whether each direction runs backwards in time."""
    direction = node.attributes["direction"].as_string() if "direction" in node.attributes else "forward"
    return {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]


def _decline_variants(node, x, sequence_lens) -> None:
    activations = node.attributes["activations"].as_strings() if "activations" in node.attributes else None
    if activations is not None and tuple(activations[:3]) != DEFAULT_ACTIVATIONS:
        raise untrainable("LSTM with activations other than sigmoid and tanh is not supported")
    if "clip" in node.attributes or attr_int(node, "input_forget", 0):
        raise untrainable("LSTM with clip or input_forget is not supported")
    steps = x.shape[1 if attr_int(node, "layout", 0) else 0]
    if sequence_lens is not None and bool((sequence_lens != steps).any()):
        raise untrainable("LSTM with sequence lengths shorter than its input is not supported")
