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

from onnxcompress import io

Dims = tuple[int | None, ...] | None
Rule = Callable[[ir.Node], list[str]]


def shape_problems(model: ir.Model) -> list[str]:
    """Every inconsistency the rules find, one line each naming the node; empty when consistent."""
    if io.initializer_bytes(model) > io.EXTERNAL_DATA_THRESHOLD:
        return []  # shape inference needs one protobuf; ORT checks such models when it loads them
    inferred = _with_inferred_shapes(model)
    problems = []
    for node in ir.traversal.RecursiveGraphIterator(inferred.graph):
        rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        for problem in rule(node) if rule else []:
            problems.append(f"{node.op_type} node {node.name or '(unnamed)'!r}: {problem}")
    return problems


def dims(value: ir.Value | None) -> Dims:
    """Static dimensions of ``value`` (None for a symbolic one), or None when the rank is unknown."""
    if value is None:
        return None
    shape = value.const_value.shape if value.const_value is not None else value.shape
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in shape)


def conv_rule(node: ir.Node) -> list[str]:
    """Weight in-channels × group = input channels; out-channels divisible by group; bias length."""
    x, w = dims(_input(node, 0)), dims(_input(node, 1))
    bias = dims(_input(node, 2))
    group = _int_attr(node, "group", 1)
    problems = []
    if x and w and len(x) > 1 and len(w) > 1 and None not in (x[1], w[1]) and w[1] * group != x[1]:
        problems.append(f"weight has {w[1]} input channels x group {group} = {w[1] * group}, input has {x[1]}")
    if w and w[0] is not None and w[0] % group:
        problems.append(f"{w[0]} output channels are not divisible by group {group}")
    if w and bias and None not in (w[0], bias[0]) and bias[0] != w[0]:
        problems.append(f"bias has {bias[0]} values for {w[0]} output channels")
    return problems


def gemm_rule(node: ir.Node) -> list[str]:
    """The inner dimensions of A and B (after transA/transB) agree; C broadcasts to the result."""
    a, b = dims(_input(node, 0)), dims(_input(node, 1))
    if not (a and b and len(a) == 2 and len(b) == 2):
        return []
    k_a = a[0] if _int_attr(node, "transA", 0) else a[1]
    k_b = b[1] if _int_attr(node, "transB", 0) else b[0]
    n = b[0] if _int_attr(node, "transB", 0) else b[1]
    problems = _mismatch("inner dimension", k_a, k_b)
    c = dims(_input(node, 2))
    if c and n is not None and c[-1] not in (None, 1, n):
        problems.append(f"C has {c[-1]} columns for a result with {n}")
    return problems


def matmul_rule(node: ir.Node) -> list[str]:
    """The last dimension of A equals the second-to-last of B (the last, when B is 1-D)."""
    a, b = dims(_input(node, 0)), dims(_input(node, 1))
    if not (a and b):
        return []
    return _mismatch("inner dimension", a[-1], b[-2] if len(b) > 1 else b[0])


def batchnorm_rule(node: ir.Node) -> list[str]:
    """Scale, bias, mean and variance each hold one value per input channel."""
    x = dims(_input(node, 0))
    channels = x[1] if x and len(x) > 1 else None
    problems = []
    for index, role in enumerate(("scale", "bias", "mean", "var"), start=1):
        vector = dims(_input(node, index))
        if vector and channels is not None and vector[0] is not None and vector[0] != channels:
            problems.append(f"{role} has {vector[0]} values for {channels} channels")
    return problems


def concat_rule(node: ir.Node) -> list[str]:
    """All inputs have the same rank and agree on every axis but the concatenation axis."""
    shapes = [dims(v) for v in node.inputs]
    if any(s is None for s in shapes) or not shapes:
        return []
    if len({len(s) for s in shapes}) > 1:
        return [f"inputs have different ranks {[len(s) for s in shapes]}"]
    rank = len(shapes[0])
    axis = _int_attr(node, "axis", 0) % max(rank, 1)
    problems = []
    for other in range(rank):
        known = {s[other] for s in shapes} - {None}
        if other != axis and len(known) > 1:
            problems.append(f"inputs disagree on axis {other}: {sorted(known)}")
    return problems


def reshape_rule(node: ir.Node) -> list[str]:
    """A constant target shape holds exactly as many elements as a fully known input."""
    x, target = dims(_input(node, 0)), _input(node, 1)
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


RULES: dict[str, Rule] = {
    "Conv": conv_rule,
    "Gemm": gemm_rule,
    "MatMul": matmul_rule,
    "BatchNormalization": batchnorm_rule,
    "Concat": concat_rule,
    "Reshape": reshape_rule,
}


def _with_inferred_shapes(model: ir.Model) -> ir.Model:
    """A copy with onnx's (lenient) shape inference applied, so intermediate shapes are known."""
    proto = io.to_proto(model)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        pass  # the structural check reports inference errors; the rules use what is declared
    return ir.serde.deserialize_model(proto)


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return int(attr.value) if attr is not None else default


def _mismatch(what: str, left: int | None, right: int | None) -> list[str]:
    if left is None or right is None or left == right:
        return []
    return [f"{what} {left} != {right}"]
