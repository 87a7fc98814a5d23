"""First-order Taylor importance, from gradients of the ONNX graph itself run in PyTorch.

Route: the graph runs in the trainable view (``passes.training.graph_module``, no source
``nn.Module`` needed), with every contraction input restarted as a leaf that records its gradient. The
loss needs no labels: cross-entropy against the model's own predictions for 2-D outputs (logits),
the squared norm otherwise; a model that outputs labels only is judged on the scores they are taken
from. A unit's score is Σ |Σ_positions a·∂L/∂a| over its contraction inputs, accumulated over the
calibration batches (Molchanov et al.'s criterion). A graph with an op the view cannot run is refused
with the op's name.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.errors import UsageError
from onnxcompress.passes.pruning.graph import ChannelGraph, Unit
from onnxcompress.passes.pruning.groups import weighted_contractions


def taylor_scores(graph: ChannelGraph, units: list[Unit], model: ir.Model, reader) -> np.ndarray:
    """|a·∂L/∂a| per unit, summed over calibration feeds in the model's own batch (needs the ``torch`` extra)."""
    try:
        import torch
    except ModuleNotFoundError:
        raise UsageError("importance=taylor needs PyTorch: pip install 'onnxcompress[torch]'") from None
    from onnxcompress.calibration.validation import model_batches
    from onnxcompress.passes.training.graph_module import GraphModule
    from onnxcompress.passes.training.targets import label_scores

    try:
        module = GraphModule(model)
    except UsageError as exc:
        raise UsageError(f"importance=taylor {exc}; use magnitude or activation") from None
    inputs = {x.value.name: x for x, _ in weighted_contractions(graph)}
    totals = {name: np.zeros(x.size) for name, x in inputs.items()}
    judged = label_scores(model) or [o.name for o in model.graph.outputs]
    for feed in model_batches(reader, model):
        values = module.evaluate(feed.arrays(), watch=inputs)
        loss = _loss(torch, [values[name] for name in judged])
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise UsageError("importance=taylor: no float output of the model depends on its weights (labels give no gradient); "
                             "use magnitude or activation")
        loss.backward()
        for name, x in inputs.items():
            if values[name].grad is None:  # a graph input (frozen anyway) or unused by the loss
                continue
            product = (values[name] * values[name].grad).detach().numpy()
            totals[name] += np.abs(np.moveaxis(product, x.axis, 0).reshape(x.size, -1).sum(axis=1))
    per_element = np.zeros(graph.element_count)
    for name, x in inputs.items():
        per_element[x.offset : x.offset + x.size] += totals[name]
    return np.array([per_element[u.elements].sum() for u in units])


def _loss(torch, outputs: list):
    """Self-supervised loss: CE against the model's own predictions for logits, else squared norm; integer
    outputs (labels, indices) give no gradient and are left out."""
    total = 0
    for out in outputs:
        if not out.dtype.is_floating_point:
            continue
        if out.dim() == 2:
            total = total + torch.nn.functional.cross_entropy(out, out.argmax(dim=1).detach())
        else:
            total = total + (out ** 2).mean()
    return total
