"""Per-op channel-consistency rules that the onnx checker and strict shape inference let through.

Neither ``onnx.checker`` (full check), strict shape inference nor ``polygraphy check lint`` rejects
a Conv whose weight has the wrong input-channel count, and ORT at ``ORT_ENABLE_ALL`` may even run
it. These rules compare the dimensions that must agree across a node's inputs (Conv, Gemm, MatMul,
BatchNormalization, Concat, Reshape) wherever shapes are known after onnx shape inference; an
unknown dimension is never a problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress import io, walk

Dims = tuple[int | None, ...] | None


def shape_problems(model: ir.Model, *, proto: onnx.ModelProto | None = None, inferred: onnx.ModelProto | None = None) -> list[str]:
    """Every inconsistency the rules find, one line each naming the node; empty when consistent.

    The rules read the shapes of ``inferred`` (``model`` serialized with its shapes inferred, e.g. by the checker's
    strict inference) or, without it, of onnx's lenient inference on ``proto`` (``model`` serialized, made when
    not given). A model with no node the rules cover infers nothing.
    """
    if proto is None and inferred is None and io.initializer_bytes(model) > io.EXTERNAL_DATA_THRESHOLD:
        return []  # shape inference needs one protobuf; ORT checks such models when it loads them
    nodes = [node for node in walk.nodes(model.graph) if _rule(node) is not None]
    if not nodes:
        return []
    if inferred is None:
        inferred = _inferred(proto if proto is not None else io.to_proto(model))
    if all(node.graph is model.graph for node in nodes):
        pairs = [(model.graph, inferred.graph)]
    else:
        pairs = list(zip(walk.graphs(model.graph), walk.proto_graphs(inferred.graph)))
    shapes = Shapes(pairs, {value.name for node in nodes for value in node.inputs if value is not None})
    problems = []
    for node in nodes:
        for problem in _rule(node)(node, shapes):
            problems.append(f"{node.op_type} node {node.name or '(unnamed)'!r}: {problem}")
    return problems


class Shapes:
    """Static dimensions of the graph values named ``names`` as the inferred proto has them (an initializer's
    tensor, else their inputs, value_info and outputs), each graph's from its own proto graph (``pairs``: the IR
    graph and its inferred proto graph; the branches of an exported ``If`` name their values alike; a value no graph
    holds is looked up by name in any), else as the value itself declares them."""

    def __init__(self, pairs: list[tuple[ir.Graph, onnx.GraphProto]], names: set[str]) -> None:
        self._found: dict[tuple[int | None, str], Dims] = {}
        for graph, proto in pairs:
            for info in (*proto.input, *proto.value_info, *proto.output):
                if info.name in names:
                    self._found[id(graph), info.name] = self._found[None, info.name] = _proto_dims(info)
            for tensor in proto.initializer:
                if tensor.name in names:
                    self._found[id(graph), tensor.name] = self._found[None, tensor.name] = tuple(tensor.dims)

    def dims(self, value: ir.Value | None) -> Dims:
        """Static dimensions of ``value`` (None for a symbolic one), or None when the rank is unknown."""
        if value is None:
            return None
        key = (id(value.graph) if value.graph is not None else None, value.name)
        if key in self._found:
            return self._found[key]
        shape = value.const_value.shape if value.const_value is not None else value.shape
        if shape is None:
            return None
        return tuple(d if isinstance(d, int) else None for d in shape)


def conv_rule(node: ir.Node, shapes: Shapes) -> list[str]:
    """Weight in-channels × group = input channels; out-channels divisible by group; bias length."""
    x, w = shapes.dims(_input(node, 0)), shapes.dims(_input(node, 1))
    bias = shapes.dims(_input(node, 2))
    group = _int_attr(node, "group", 1)
    problems = []
    if x and w and len(x) > 1 and len(w) > 1 and None not in (x[1], w[1]) and w[1] * group != x[1]:
        problems.append(f"weight has {w[1]} input channels x group {group} = {w[1] * group}, input has {x[1]}")
    if w and w[0] is not None and w[0] % group:
        problems.append(f"{w[0]} output channels are not divisible by group {group}")
    if w and bias and None not in (w[0], bias[0]) and bias[0] != w[0]:
        problems.append(f"bias has {bias[0]} values for {w[0]} output channels")
    return problems


def gemm_rule(node: ir.Node, shapes: Shapes) -> list[str]:
    """The inner dimensions of A and B (after transA/transB) agree; C broadcasts to the result."""
    a, b = shapes.dims(_input(node, 0)), shapes.dims(_input(node, 1))
    if not (a and b and len(a) == 2 and len(b) == 2):
        return []
    k_a = a[0] if _int_attr(node, "transA", 0) else a[1]
    k_b = b[1] if _int_attr(node, "transB", 0) else b[0]
    n = b[0] if _int_attr(node, "transB", 0) else b[1]
    problems = _mismatch("inner dimension", k_a, k_b)
    c = shapes.dims(_input(node, 2))
    if c and n is not None and c[-1] not in (None, 1, n):
        problems.append(f"C has {c[-1]} columns for a result with {n}")
    return problems


def matmul_rule(node: ir.Node, shapes: Shapes) -> list[str]:
    """The last dimension of A equals the second-to-last of B (the last, when B is 1-D)."""
    a, b = shapes.dims(_input(node, 0)), shapes.dims(_input(node, 1))
    if not (a and b):
        return []
    return _mismatch("inner dimension", a[-1], b[-2] if len(b) > 1 else b[0])


def batchnorm_rule(node: ir.Node, shapes: Shapes) -> list[str]:
    """Scale, bias, mean and variance each hold one value per input channel."""
    x = shapes.dims(_input(node, 0))
    channels = x[1] if x and len(x) > 1 else None
    problems = []
    for index, role in enumerate(("scale", "bias", "mean", "var"), start=1):
        vector = shapes.dims(_input(node, index))
        if vector and channels is not None and vector[0] is not None and vector[0] != channels:
            problems.append(f"{role} has {vector[0]} values for {channels} channels")
    return problems


def concat_rule(node: ir.Node, shapes: Shapes) -> list[str]:
    """All inputs have the same rank and agree on every axis but the concatenation axis."""
    found = [shapes.dims(v) for v in node.inputs]
    if any(s is None for s in found) or not found:
        return []
    if len({len(s) for s in found}) > 1:
        return [f"inputs have different ranks {[len(s) for s in found]}"]
    rank = len(found[0])
    axis = _int_attr(node, "axis", 0) % max(rank, 1)
    problems = []
    for other in range(rank):
        known = {s[other] for s in found} - {None}
        if other != axis and len(known) > 1:
            problems.append(f"inputs disagree on axis {other}: {sorted(known)}")
    return problems


def reshape_rule(node: ir.Node, shapes: Shapes) -> list[str]:
    """A constant target shape holds exactly as many elements as a fully known input."""
    x, target = shapes.dims(_input(node, 0)), _input(node, 1)
    if not x or None in x or target is None or target.const_value is None:
        return []
    shape = [int(d) for d in np.asarray(target.const_value.numpy()).ravel()]
    allow_zero = _int_attr(node, "allowzero", 0)
    resolved = [x[i] if d == 0 and not allow_zero and i < len(x) else d for i, d in enumerate(shape)]
    total = math.prod(x)
    known = math.prod(d for d in resolved if d != -1)
    if -1 in resolved:
        if known == 0 or total % known:
            return [f"cannot reshape {total} elements to {shape}"]
        return []
    return [] if known == total else [f"cannot reshape {total} elements to {shape}"]


Rule = Callable[[ir.Node, Shapes], list[str]]
RULES: dict[str, Rule] = {
    "Conv": conv_rule,
    "Gemm": gemm_rule,
    "MatMul": matmul_rule,
    "BatchNormalization": batchnorm_rule,
    "Concat": concat_rule,
    "Reshape": reshape_rule,
}


def _rule(node: ir.Node) -> Rule | None:
    return RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None


def _inferred(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with onnx's (lenient) shape inference applied, so intermediate shapes are known."""
    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=not walk.names_repeat(walk.proto_graphs(proto.graph)))
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        return proto  # the structural check reports inference errors; the rules use what is declared


def _proto_dims(info: onnx.ValueInfoProto) -> Dims:
    """A value info's dimensions (None for a symbolic or unknown one), None when it has no tensor shape."""
    if not info.type.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim)


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return int(attr.value) if attr is not None else default


def _mismatch(what: str, left: int | None, right: int | None) -> list[str]:
    if left is None or right is None or left == right:
        return []
    return [f"{what} {left} != {right}"]
