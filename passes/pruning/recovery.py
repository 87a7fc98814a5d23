"""Recovery without training: what the removed channels contributed goes back into the consumers.

Every consumer that contracts a removed channel with a weight (Conv with ``group=1``, Gemm, MatMul
with a 2-D weight) is written as ``Y = X·W (+ b)`` over its *design matrix* X (Conv: im2col patches,
rows ordered like the flattened weight). Statistics of X are streamed over the calibration data
(``calibration.activations.stream_activations``; memory is bounded by the weight size, not the
sample count):

* ``fold_into_bias``: b += mean(X_removed)·W_removed — the removed channels' mean contribution.
* ``reconstruct``: least squares re-fit of the kept rows and the bias so that X_kept·W' + b'
  matches the original X·W (the graph-level analogue of ThiNet / channel-pruning reconstruction),
  solved from the accumulated normal equations with a small ridge term that pulls towards the kept
  rows as they are: where the data leaves the fit undetermined (a squeeze-excite block's pooled input,
  one row per sample, against hundreds of kept channels) the weights stay instead of shrinking to 0.
  A consumer without a bias is fitted without the intercept it could not hold.

Consumers that read one weight (an unrolled LSTM's steps; one float16 tensor cast once and read twice;
untied copies of a shared tensor, ``untie.py``) are fitted once, on all their inputs, so the weight
stays one tensor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.pruning.graph import ChannelGraph, Unit
from onnxcompress.passes.pruning.groups import stored_weight, weighted_contractions
from onnxcompress.passes.pruning.rewrite import removed_indices
from onnxcompress.passes.pruning.rules.conv import weight_shape
from onnxcompress.passes.pruning.untie import Tie

RIDGE = 1e-3


@dataclasses.dataclass
class Consumer:
    """A weighted op reading removed channels, its weight as a [K, N] matrix (and the initializer storing it)
    and its bias, if any."""

    node: ir.Node
    x: ir.Value
    removed_rows: np.ndarray
    weight: np.ndarray
    stored: ir.Value
    bias: ir.Value | None
    sum_x: np.ndarray | None = None
    gram: np.ndarray | None = None
    rows: int = 0

    def accumulate(self, x: np.ndarray, with_gram: bool) -> None:
        """Add one batch of the consumer's input to the running statistics."""
        design = design_matrix(self.node, x)
        self.sum_x = design.sum(axis=0) + (0 if self.sum_x is None else self.sum_x)
        if with_gram:
            augmented = np.hstack([design, np.ones((len(design), 1))])
            self.gram = augmented.T @ augmented + (0 if self.gram is None else self.gram)
        self.rows += len(design)


def design_matrix(node: ir.Node, x: np.ndarray) -> np.ndarray:
    """X such that the op computes X·W: im2col patches for Conv, flattened rows otherwise."""
    x = x.astype(np.float64)
    if node.op_type != "Conv":
        return x.reshape(-1, x.shape[-1])
    kernel = weight_shape(node.inputs[1])[2:]
    strides = node.attributes.get_ints("strides", [1] * len(kernel))
    dilations = node.attributes.get_ints("dilations", [1] * len(kernel))
    pads = node.attributes.get_ints("pads", [0] * 2 * len(kernel))
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + len(kernel)]) for i in range(len(kernel))])
    window = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=tuple(range(2, 2 + len(kernel))))
    index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
    views = views[index][(...,) + tuple(slice(None, None, d) for d in dilations)]
    spatial = len(kernel)
    order = (0, *range(2, 2 + spatial), 1, *range(2 + spatial, 2 + 2 * spatial))
    return views.transpose(order).reshape(-1, x.shape[1] * int(np.prod(kernel)))


def fold_into_bias(model: ir.Model, graph: ChannelGraph, chosen: list[Unit], reader, ties: Sequence[Tie] = ()) -> str:
    """Add the removed channels' mean contribution to each consumer's bias; return a report line.

    ``ties`` (``untie_weights``' pairs) name the copies of one shared weight: see ``sharing_one_weight``."""
    consumers = _collect(model, graph, chosen, reader, with_gram=False)
    for members in sharing_one_weight(consumers, ties):
        first = members[0]
        mean = sum(c.sum_x for c in members) / max(sum(c.rows for c in members), 1)
        for c in members:
            _add_to_bias(c, mean[first.removed_rows] @ first.weight[first.removed_rows])
    return f"bias folding: {len(consumers)} consumer(s) got the removed channels' mean contribution"


def reconstruct(model: ir.Model, graph: ChannelGraph, chosen: list[Unit], reader, ties: Sequence[Tie] = ()) -> str:
    """Least-squares re-fit of each consumer's kept weight rows and bias; return a report line.

    ``ties`` (``untie_weights``' pairs) name the copies of one shared weight: see ``sharing_one_weight``."""
    consumers = _collect(model, graph, chosen, reader, with_gram=True)
    for members in sharing_one_weight(consumers, ties):
        fitted, bias_delta = _least_squares(members)
        for c in members:
            _set_weight(c, fitted)
            _add_to_bias(c, bias_delta)
    return f"reconstruct: re-fitted {len(consumers)} consumer(s) by least squares on calibration data"


def sharing_one_weight(consumers: list[Consumer], ties: Sequence[Tie]) -> list[list[Consumer]]:
    """Consumers grouped by the weight they read, an untied copy counting as its source: a weight read in several
    places (an unrolled LSTM's steps, float16 storage cast once and read twice) is one parameter and gets one fit,
    from all its readers' data, instead of one fit per reader that leaves the last writer's or grows copies."""
    source = {id(copy): id(original) for copy, original in ties}
    groups: dict[tuple, list[Consumer]] = {}
    for c in consumers:
        orientation = (c.node.op_type, c.node.attributes.get_int("transB", 0))
        key = (source.get(id(c.stored), id(c.stored)), orientation, c.removed_rows.tobytes())
        groups.setdefault(key, []).append(c)
    return list(groups.values())


def _least_squares(members: list[Consumer]) -> tuple[np.ndarray, np.ndarray]:
    """The kept rows and bias change that best reproduce the full weight's output over every member's inputs; with
    no bias to take it (a bare MatMul, a Conv without one) the change is 0 and the rows are fitted without it."""
    first = members[0]
    k = first.weight.shape[0]
    intercept = [k] if all(c.bias is not None for c in members) else []
    kept = np.concatenate([np.setdiff1d(np.arange(k), first.removed_rows), intercept]).astype(int)
    gram = sum(c.gram for c in members) / max(sum(c.rows for c in members), 1)
    unfitted = np.vstack([first.weight, np.zeros((1, first.weight.shape[1]))])[kept]  # the kept rows as they are, no change
    ridge = RIDGE * np.trace(gram[np.ix_(kept, kept)]) / len(kept)
    lhs = gram[np.ix_(kept, kept)] + ridge * np.eye(len(kept))
    solution = np.linalg.solve(lhs, (gram[:, :k] @ first.weight)[kept] + ridge * unfitted)
    fitted = first.weight.copy()
    fitted[kept[kept < k]] = solution[: len(kept) - len(intercept)]
    return fitted, solution[-1] if intercept else np.zeros(first.weight.shape[1])


def _collect(model: ir.Model, graph: ChannelGraph, chosen: list[Unit], reader, *, with_gram: bool) -> list[Consumer]:
    from onnxcompress.calibration.activations import stream_activations

    removed, _ = removed_indices(graph, chosen)
    consumers = [c for x, w in weighted_contractions(graph) if (c := _consumer(x, w, removed)) is not None]
    names = list(dict.fromkeys(c.x.name for c in consumers))
    for batch in stream_activations(model, reader, names) if consumers else ():
        for c in consumers:
            c.accumulate(batch[c.x.name], with_gram)
    return consumers


def _consumer(x, w, removed: dict) -> Consumer | None:
    gone = removed.get((id(x.value), x.axis))
    if not gone:
        return None
    node = next((n for n, _ in w.value.uses() if x.value in n.inputs), None)
    stored = stored_weight(w.value)
    array = stored.const_value.numpy().astype(np.float64)
    if node is None or node.op_type == "Conv" and node.attributes.get_int("group", 1) != 1:
        return None
    if node.op_type == "Conv":
        per_channel = int(np.prod(array.shape[2:]))
        rows = (np.asarray(gone)[:, None] * per_channel + np.arange(per_channel)).ravel()
        return Consumer(node, x.value, rows, array.reshape(array.shape[0], -1).T, stored, _bias(node))
    if node.op_type == "Gemm" and not node.attributes.get_int("transA", 0):
        matrix = array.T if node.attributes.get_int("transB", 0) else array
        return Consumer(node, x.value, np.asarray(gone), matrix, stored, _bias(node))
    if node.op_type == "MatMul" and array.ndim == 2 and node.inputs[0] is x.value:
        return Consumer(node, x.value, np.asarray(gone), array, stored, _bias(node))
    return None


def _bias(node: ir.Node) -> ir.Value | None:
    """The bias the op adds: its own input (Conv, Gemm) or a constant [N] Add right after a MatMul."""
    if node.op_type in ("Conv", "Gemm"):
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        return bias if bias is not None and is_bias_vector(bias) else None
    uses = node.outputs[0].uses()
    if len(uses) == 1 and uses[0][0].op_type == "Add":
        other = [v for v in uses[0][0].inputs if v is not node.outputs[0]]
        return other[0] if other and is_bias_vector(other[0]) else None
    return None


def is_bias_vector(value: ir.Value) -> bool:
    """A 1-D floating-point initializer (that is not an overridable graph input)."""
    return value.const_value is not None and not value.is_graph_input() and len(value.const_value.shape) == 1


def _add_to_bias(c: Consumer, delta: np.ndarray) -> None:
    if c.bias is None:
        return
    current = c.bias.const_value.numpy()
    c.bias.const_value = ir.tensor((current + delta).astype(current.dtype), name=c.bias.name)


def _set_weight(c: Consumer, matrix: np.ndarray) -> None:
    weight = c.stored
    original = weight.const_value.numpy()
    if c.node.op_type == "Conv":
        array = matrix.T.reshape(original.shape)
    elif c.node.op_type == "Gemm" and c.node.attributes.get_int("transB", 0):
        array = matrix.T
    else:
        array = matrix
    weight.const_value = ir.tensor(array.astype(original.dtype), name=weight.name)
