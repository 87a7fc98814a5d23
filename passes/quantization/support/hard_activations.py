"""Hard-sigmoid and hard-swish after a Conv → forms whose every op ORT's CPU EP runs in int8.

ORT's CPU EP has no integer HardSigmoid/HardSwish kernel, so in a QDQ model each one stays in FP32
between a DequantizeLinear and a QuantizeLinear (and ORT expands HardSwish into HardSigmoid + Mul):
on the MobileNetV3-style net those were 16 unfused layers, and the INT8 model ran slower than FP32.
These exact FP32 rewrites fold the activation's affine part into the producing Conv's weights:

- ``HardSigmoid(Conv(x, W, b))`` → ``Clip(Conv(x, αW, αb + β), 0, 1)``: ORT folds the Clip into the
  QLinearConv's output quantization (the squeeze-excite gate).
- ``HardSwish(Conv(x, W, b))`` → ``z · Clip(z + √6/2, 0, √6)`` with ``z = Conv(x, W/√6, b/√6)``:
  since ``y·Clip(y/6 + 1/2, 0, 1) = (y/√6)·Clip(y/√6 + √6/2, 0, √6)``, one QLinearAdd (whose output
  quantization does the Clip) and one QLinearMul, with no separate multiply by 1/6.

Against ORT ``quantize_static`` (which keeps those float regions) on the MobileNetV3-style nets,
``quantize-static`` with these rewrites leaves no layer unfused and runs faster
(``docs/benchmarks/bench_quantization.md``).
What int8 still pays there: ORT fuses HardSwish into its FP32 NCHWc Conv for free, while the int8
QLinearMul costs as much as a float Mul, and the squeeze-excite Mul broadcasts along the innermost
(NHWC) axis (``channel_gate.py``).
A Conv output read by anything else, non-constant weights or non-float types are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Set

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.values import constant
from onnxcompress.passes.initializers import add_initializer, drop_if_unused

SQRT_6 = math.sqrt(6.0)
HARD_SIGMOID_DEFAULTS = {"alpha": 0.2, "beta": 0.5}
HARD_SIGMOID_NEEDS = frozenset({"Conv", "Clip"})
HARD_SWISH_NEEDS = frozenset({"Conv", "Add", "Mul", "Clip"})


def rewrite_hard_activations(model: ir.Model, op_types: Sequence[str], excluded: Set[str] = frozenset()) -> dict[str, int]:
    """Rewrite (in place) the hard activations after Convs whose new ops ``op_types`` will quantize; counts by kind.

    A rewrite only pays when every op it introduces is quantized (else ORT keeps a float Add/Mul
    between Q/DQ instead of the HardSwish), so each kind runs only when ``op_types`` covers its ops,
    and never after a Conv named in ``excluded``: that Conv stays FP32, where ORT fuses the activation.
    The Conv keeps its name (``exclude`` patterns and reports refer to it); new nodes are named
    after the activation they replace.
    """
    chosen = set(op_types)
    rewrites = {"HardSigmoid": (_hard_sigmoid, HARD_SIGMOID_NEEDS), "HardSwish": (_hard_swish, HARD_SWISH_NEEDS)}
    counts = dict.fromkeys(rewrites, 0)
    for node in list(model.graph):
        kind = node.op_type if node.domain in ("", "ai.onnx") else None
        if kind not in rewrites or not rewrites[kind][1] <= chosen:
            continue
        conv = _foldable_conv(node)
        if conv is not None and conv.name not in excluded:
            rewrites[kind][0](model.graph, node, conv)
            counts[kind] += 1
    return counts


def _foldable_conv(activation: ir.Node) -> ir.Node | None:
    """The float32 Conv with constant weights (and bias) whose output only ``activation`` reads, else None."""
    value = activation.inputs[0]
    conv = value.producer() if value is not None else None
    if conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
        return None
    if value.is_graph_output() or len(value.uses()) != 1:
        return None
    weights = constant(conv.inputs[1])
    bias = _bias(conv)
    if weights is None or weights.dtype != np.float32 or (bias is not None and constant(bias) is None):
        return None
    return conv


def _hard_sigmoid(graph: ir.Graph, node: ir.Node, conv: ir.Node) -> None:
    """``HardSigmoid(Conv(x, W, b))`` → ``Clip(Conv(x, αW, αb + β), 0, 1)``."""
    alpha, beta = (node.attributes.get_float(key, default) for key, default in HARD_SIGMOID_DEFAULTS.items())
    _scale_conv(graph, conv, alpha, beta)
    clip = _node("Clip", [conv.outputs[0], _scalar(graph, 0.0), _scalar(graph, 1.0)], f"{_label(node)}_clip")
    _replace(graph, node, [clip])


def _hard_swish(graph: ir.Graph, node: ir.Node, conv: ir.Node) -> None:
    """``HardSwish(Conv(x, W, b))`` → ``z · Clip(z + √6/2, 0, √6)`` with ``z = Conv(x, W/√6, b/√6)``."""
    _scale_conv(graph, conv, 1.0 / SQRT_6, 0.0)
    z = conv.outputs[0]
    label = _label(node)
    add = _node("Add", [z, _scalar(graph, SQRT_6 / 2)], f"{label}_add")
    clip = _node("Clip", [add.outputs[0], _scalar(graph, 0.0), _scalar(graph, SQRT_6)], f"{label}_clip")
    mul = _node("Mul", [z, clip.outputs[0]], f"{label}_mul")
    _replace(graph, node, [add, clip, mul])


def _label(node: ir.Node) -> str:
    """The node's name, else its (graph-unique) output name: the stem for the names of what replaces it."""
    return node.name or node.outputs[0].name


def _bias(conv: ir.Node) -> ir.Value | None:
    return conv.inputs[2] if len(conv.inputs) > 2 else None


def _scale_conv(graph: ir.Graph, conv: ir.Node, scale: float, shift: float) -> None:
    """Make ``conv`` compute ``scale · conv + shift`` through new weight and bias initializers (the old may be shared)."""
    weights = constant(conv.inputs[1])
    bias = constant(_bias(conv)) if _bias(conv) is not None else np.zeros(weights.shape[0], np.float32)
    new_weights = add_initializer(graph, f"{_label(conv)}_weight_scaled", (weights * np.float32(scale)).astype(np.float32))
    new_bias = add_initializer(graph, f"{_label(conv)}_bias_scaled", (bias * np.float32(scale) + np.float32(shift)).astype(np.float32))
    if len(conv.inputs) < 3:
        conv.resize_inputs(3)
    old = conv.inputs[1:3]
    conv.replace_input_with(1, new_weights)
    conv.replace_input_with(2, new_bias)
    for value in old:
        drop_if_unused(graph, value)


def _node(op_type: str, inputs: list[ir.Value], name: str) -> ir.Node:
    """A standard-domain node whose output is named after it (calibration ranges are keyed by tensor name)."""
    return ir.node(op_type, inputs, name=name, outputs=[ir.Value(name=f"{name}_output")])


def _replace(graph: ir.Graph, old: ir.Node, new: list[ir.Node]) -> None:
    """Put ``new`` where ``old`` was; the last new node's output takes over ``old``'s output (and its name)."""
    ir.convenience.replace_nodes_and_values(graph, old, [old], new, [old.outputs[0]], [new[-1].outputs[0]])


def _scalar(graph: ir.Graph, value: float) -> ir.Value:
    """A float32 scalar initializer shared by every rewrite in the graph."""
    name = f"hard_activation_{value:.9g}"
    existing = graph.initializers.get(name)
    return existing if existing is not None else add_initializer(graph, name, np.array(value, np.float32))
