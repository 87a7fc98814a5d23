"""First-order Taylor importance, from gradients of the ONNX graph itself run in PyTorch.

Route: a tiny interpreter evaluates the main graph with ``torch`` ops (no onnx2torch, no source
``nn.Module`` needed), keeping every contraction input as a leaf that records its gradient. The
loss needs no labels: cross-entropy against the model's own predictions for 2-D outputs (logits),
the squared norm otherwise. A unit's score is Σ |Σ_positions a·∂L/∂a| over its contraction inputs,
accumulated over the calibration batches (Molchanov et al.'s criterion). Only the ops in ``OPS`` are
interpreted; a graph with another op is refused with the op's name.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.errors import UsageError
from onnxcompress.passes.pruning.graph import ChannelGraph, Unit
from onnxcompress.passes.pruning.groups import is_weight
from onnxcompress.passes.values import constant


def _conv(node, x, w, b=None):
    import torch.nn.functional as F

    a = node.attributes
    pads = a.get_ints("pads", [0] * 2 * (w.dim() - 2))
    half = len(pads) // 2
    if pads[:half] != pads[half:]:
        x = F.pad(x, [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])])
        pads = [0] * len(pads)
    return F.conv2d(x, w, b, a.get_ints("strides", [1, 1]), pads[:half], a.get_ints("dilations", [1, 1]), a.get_int("group", 1))


def _gemm(node, a, b, c=None):
    a = a.T if node.attributes.get_int("transA", 0) else a
    b = b.T if node.attributes.get_int("transB", 0) else b
    y = node.attributes.get_float("alpha", 1.0) * a @ b
    return y if c is None else y + node.attributes.get_float("beta", 1.0) * c


def _batchnorm(node, x, scale, bias, mean, var):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    eps = node.attributes.get_float("epsilon", 1e-5)
    return (x - mean.reshape(shape)) / (var.reshape(shape) + eps).sqrt() * scale.reshape(shape) + bias.reshape(shape)


def _pool(node, x):
    import torch.nn.functional as F

    kernel = node.attributes.get_ints("kernel_shape")
    strides = node.attributes.get_ints("strides", kernel)
    pads = node.attributes.get_ints("pads", [0] * 2 * len(kernel))
    pool = F.max_pool2d if node.op_type == "MaxPool" else F.avg_pool2d
    return pool(x, kernel, strides, pads[: len(kernel)])


def _cat(node, *xs):
    import torch

    return torch.cat(xs, dim=node.attributes.get_int("axis"))


def _reshape(node, x, shape):
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(shape.tolist())]
    return x.reshape(dims)


OPS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": lambda node, a, b: a @ b,
    "Add": lambda node, a, b: a + b,
    "Sub": lambda node, a, b: a - b,
    "Mul": lambda node, a, b: a * b,
    "Div": lambda node, a, b: a / b,
    "Relu": lambda node, x: x.relu(),
    "Sigmoid": lambda node, x: x.sigmoid(),
    "Tanh": lambda node, x: x.tanh(),
    "HardSigmoid": lambda node, x: (node.attributes.get_float("alpha", 0.2) * x + node.attributes.get_float("beta", 0.5)).clamp(0, 1),
    "HardSwish": lambda node, x: x * (x / 6 + 0.5).clamp(0, 1),
    "Identity": lambda node, x: x,
    "BatchNormalization": _batchnorm,
    "GlobalAveragePool": lambda node, x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "MaxPool": _pool,
    "AveragePool": _pool,
    "Flatten": lambda node, x: x.reshape(int(np.prod(x.shape[: node.attributes.get_int("axis", 1)])), -1),
    "Reshape": _reshape,
    "Concat": _cat,
}


def taylor_scores(graph: ChannelGraph, units: list[Unit], model: ir.Model, reader) -> np.ndarray:
    """|a·∂L/∂a| per unit, summed over calibration feeds in the model's own batch (needs the ``torch`` extra)."""
    try:
        import torch
    except ModuleNotFoundError:
        raise UsageError("importance=taylor needs PyTorch: pip install 'onnxcompress[torch]'") from None

    unsupported = sorted({n.op_type for n in model.graph if n.op_type not in OPS and n.op_type != "Constant"})
    if unsupported:
        raise UsageError(f"importance=taylor cannot interpret op(s) {', '.join(unsupported)}; use magnitude or activation")
    inputs = {x.value.name: x for x, w in graph.contractions if is_weight(w) and not is_weight(x)}
    totals = {name: np.zeros(x.size) for name, x in inputs.items()}
    from onnxcompress.calibration.validation import model_batches

    for feed in model_batches(reader, model):
        values = _forward(model, feed.arrays(), set(inputs))
        _loss(torch, [values[o.name] for o in model.graph.outputs]).backward()
        for name, x in inputs.items():
            if values[name].grad is None:  # a graph input (frozen anyway) or unused by the loss
                continue
            product = (values[name] * values[name].grad).detach().numpy()
            totals[name] += np.abs(np.moveaxis(product, x.axis, 0).reshape(x.size, -1).sum(axis=1))
    per_element = np.zeros(graph.element_count)
    for name, x in inputs.items():
        per_element[x.offset : x.offset + x.size] += totals[name]
    return np.array([per_element[u.elements].sum() for u in units])


def _forward(model: ir.Model, batch: dict[str, np.ndarray], watched: set[str]) -> dict:
    """Evaluate the graph in torch; watched tensors restart as leaves, so their ``.grad`` is ∂L/∂tensor."""
    import torch

    values = {name: torch.as_tensor(array) for name, array in batch.items()}
    for value in model.graph.initializers.values():
        values[value.name] = torch.as_tensor(value.const_value.numpy().copy())
    for node in model.graph:
        if node.op_type == "Constant":
            values[node.outputs[0].name] = torch.as_tensor(constant(node.outputs[0]).copy())
            continue
        args = [values[v.name] if v is not None else None for v in node.inputs]
        if node.op_type == "Reshape":
            args[1] = args[1].numpy()
        out = OPS[node.op_type](node, *args)
        name = node.outputs[0].name
        values[name] = out.detach().requires_grad_(True) if name in watched else out
    return values


def _loss(torch, outputs: list):
    """Self-supervised loss: CE against the model's own predictions for logits, else squared norm."""
    total = 0
    for out in outputs:
        if out.dim() == 2 and out.dtype.is_floating_point:
            total = total + torch.nn.functional.cross_entropy(out, out.argmax(dim=1).detach())
        else:
            total = total + (out.float() ** 2).mean()
    return total
