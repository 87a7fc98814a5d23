"""Build the channel dependency graph of a model by running every node's rule.

Shapes are inferred first (rules need static sizes). Graph inputs and outputs, initializers that
are also graph inputs (overridable at run time), nodes inside subgraphs and nodes without a rule
freeze every axis they touch, with a reason naming the op and node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxcompress import runtime, synthetic_inputs
from onnxcompress.errors import UsageError
from onnxcompress.calibration.activations import expose_tensors

from onnxcompress.passes.pruning.attention_layout import normalise_attention
from onnxcompress.passes.pruning.graph import NOT_A_CHANNEL, PROBED, ChannelGraph, Coupler
from onnxcompress.passes.pruning.rules import Refused, rule_for
from onnxcompress.passes.shapes import infer_shapes as whole_model_shapes
from onnxcompress.passes.values import rank_or_zero

PROBE_SIZES = (2, 3)


def infer_shapes(model: ir.Model, example: Mapping[str, Sequence[int]] | None = None) -> None:
    """Fill in static shapes of intermediate values in place.

    onnx shape inference loses static sizes behind shape arithmetic (a head count behind a
    ``Concat`` of ``Shape`` pieces and ``Constant`` nodes, a mask built with ``Where``), so the model is
    also run by ONNX Runtime at two different sizes of its run-time dims: a dim equal in both runs is
    static. Measured on MiniLM, this is what recovers the head axis (12) onnx leaves symbolic.
    Both runs' shapes stay in each value's ``meta[PROBED]``: they show how run-time dims combine
    (a ``batch × heads`` axis), which a shape with unknown dims cannot. ``example`` (the input shapes
    of real data) serves a model that does not run at the probe sizes, such as PyTorch's legacy export
    of ``nn.MultiheadAttention``, which fixes the key length in a constant: the probes then keep its
    sizes and vary the batch axis only.
    """
    whole_model_shapes(model)
    probes = _probe_runs(model, example)
    if probes is None:
        return
    values = {v.name: v for node in model.graph for v in node.outputs}
    for name, (first, dtype) in probes[0].items():
        second = probes[1][name][0]
        value = values.get(name)
        if value is None or len(first) != len(second):
            continue
        if value.type is None and dtype is not None:  # an op shape inference does not know (com.microsoft)
            value.type = ir.TensorType(ir.DataType.from_numpy(dtype))
        value.meta[PROBED] = (first, second)
        old = list(value.shape) if value.shape is not None and len(value.shape) == len(first) else [None] * len(first)
        value.shape = ir.Shape([a if a == b else (d if not isinstance(d, int) else None) for a, b, d in zip(first, second, old)])


def _probe_runs(model: ir.Model, example: Mapping[str, Sequence[int]] | None) -> list[dict[str, tuple[tuple[int, ...], np.dtype | None]]] | None:
    """The shapes (and element types) of the two probe runs, or None when the model runs at neither the probe sizes
    nor the example's."""
    for sizes in (None, example) if example is not None else (None,):
        try:
            return [_probe_shapes(model, size, sizes) for size in PROBE_SIZES]
        except UsageError:  # no runnable synthetic inputs (unshaped inputs, tiny dynamic images, a fixed length)
            continue
    return None


def _probe_shapes(model: ir.Model, size: int, example: Mapping[str, Sequence[int]] | None = None) -> dict[str, tuple[tuple[int, ...], np.dtype | None]]:
    """Shape and element type of every node output when run-time input dims are ``size`` (batch) or ``size + 14``
    (others; the ``example``'s size there when given)."""
    def dim(name: str, axis: int, d) -> int:
        if isinstance(d, int):
            return d
        if axis == 0:
            return size
        return int(example[name][axis]) if example is not None and name in example else size + 14

    inputs = synthetic_inputs.fed_inputs(model.graph)
    shapes = {
        v.name: tuple(dim(v.name, axis, d) for axis, d in enumerate(v.shape))
        for v in inputs if v.shape is not None and not synthetic_inputs.follows_other_inputs(v, inputs)
    }  # a cached model's mask (``past_sequence_length + sequence_length``) follows the others' dims
    names = [v.name for node in model.graph for v in node.outputs if v.name]
    feeds = runtime.synthetic_inputs(model, shapes=shapes)
    results = runtime.run(expose_tensors(model, names), feeds, optimization="disable")
    return {name: (np.shape(array), getattr(array, "dtype", None)) for name, array in results.items()}


def build_channel_graph(model: ir.Model, *, layernorm: bool = False) -> ChannelGraph:
    """Couple and freeze the elements of every tensor axis in the main graph, after rewriting PyTorch's
    attention layout (exactly) into one the rules follow (``attention_layout``)."""
    normalise_attention(model)
    graph = ChannelGraph()
    main = model.graph
    for node in main:
        coupler = Coupler(graph, node, layernorm=layernorm)
        rule = rule_for(node)
        if rule is None:
            coupler.freeze_unmentioned(f"no pruning rule for {node.op_type}")
            continue
        try:
            rule.couple(node, coupler)
        except Refused as refusal:
            coupler.mentioned.clear()
            coupler.freeze_unmentioned(str(refusal))
            continue
        coupler.freeze_unmentioned(NOT_A_CHANNEL)
    _freeze_boundary(graph, main)
    return graph


def _freeze_boundary(graph: ChannelGraph, main: ir.Graph) -> None:
    boundary = [*main.inputs, *main.outputs]
    boundary += [v for v in main.initializers.values() if v.is_graph_input()]
    for node in main.all_nodes():
        if node.graph is not main:
            boundary += [v for v in node.inputs if v is not None]
    for value in boundary:
        for axis in range(rank_or_zero(value)):
            slot = graph.slot(value, axis)
            if slot is not None:
                graph.freeze(slot, f"graph input/output {value.name!r}")
