"""Hypothesis-generated small graphs go through the exact passes with their outputs unchanged.

Each graph is a random chain of ops on a [2, 4] tensor, mixing what the exact passes rewrite
(foldable constant sub-graphs, dead branches, identity and round-trip ops, MatMul+Add, Conv+BN)
with what they must leave alone. ``fold-constants``, ``cleanup`` and ``fuse`` are applied through
the registry; the result is checked by ``assert_exact_rewrite`` (checker, strict inference, ORT
at ORT_DISABLE_ALL and ORT_ENABLE_ALL).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnxcompress import checks, io, spec

EXACT_PASSES = ("fold-constants", "cleanup", "fuse")
SHAPE = (2, 4)


class ChainBuilder:
    """Appends ops to a graph, each taking the current [2, 4] tensor to a new [2, 4] tensor."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.current = "x"
        self.intermediates: list[str] = []

    def name(self, stem: str) -> str:
        return f"{stem}{len(self.nodes) + len(self.initializers)}"

    def const(self, array: np.ndarray) -> str:
        name = self.name("c")
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def step(self, kind: str) -> None:
        weights = lambda *shape: (self.rng.standard_normal(shape) * 0.5).astype(np.float32)  # noqa: E731
        cur = self.current
        if kind in ("Relu", "Sigmoid", "Tanh", "Identity", "Neg", "Abs"):
            cur = self.node(kind, [cur])
        elif kind in ("Add", "Mul", "Sub"):
            cur = self.node(kind, [cur, self.const(weights(SHAPE[1]))])
        elif kind == "matmul":
            cur = self.node("MatMul", [cur, self.const(weights(4, 4))])
        elif kind == "matmul_add":
            cur = self.node("Add", [self.node("MatMul", [cur, self.const(weights(4, 4))]), self.const(weights(4))])
        elif kind == "constant_subgraph":
            folded = self.node("Mul", [self.node("Add", [self.const(weights(4)), self.const(weights(4))]), self.const(weights(4))])
            cur = self.node("Add", [cur, folded])
        elif kind == "constant_node":
            value = self.node("Constant", [], value=numpy_helper.from_array(weights(4)))
            cur = self.node("Mul", [cur, value])
        elif kind == "dead_branch":
            self.node("Exp", [cur])
        elif kind == "transpose_pair":
            cur = self.node("Transpose", [self.node("Transpose", [cur], perm=[1, 0])], perm=[1, 0])
        elif kind == "reshape_round_trip":
            flat = self.node("Reshape", [cur, self.const(np.array([8], np.int64))])
            cur = self.node("Reshape", [flat, self.const(np.array(SHAPE, np.int64))])
        elif kind == "cast_no_op":
            cur = self.node("Cast", [cur], to=TensorProto.FLOAT)
        elif kind == "conv_bn":
            image = self.node("Reshape", [cur, self.const(np.array([1, 2, 2, 2], np.int64))])
            conv = self.node("Conv", [image, self.const(weights(2, 2, 1, 1)), self.const(weights(2))])
            scale, bias = self.const(weights(2) + 1.0), self.const(weights(2))
            mean, var = self.const(weights(2)), self.const(np.abs(weights(2)) + 0.5)
            bn = self.node("BatchNormalization", [conv, scale, bias, mean, var])
            cur = self.node("Reshape", [bn, self.const(np.array(SHAPE, np.int64))])
        self.intermediates.append(cur)
        self.current = cur

    def model(self, expose: int | None) -> ir.Model:
        outputs = [helper.make_tensor_value_info(self.current, TensorProto.FLOAT, SHAPE)]
        extra = self.intermediates[expose % len(self.intermediates)] if expose is not None and self.intermediates else None
        if extra and extra not in (self.current, "x"):
            outputs.append(helper.make_tensor_value_info(extra, TensorProto.FLOAT, SHAPE))
        graph = helper.make_graph(self.nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)], outputs, self.initializers)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        return ir.serde.deserialize_model(proto)


STEPS = [
    "Relu", "Sigmoid", "Tanh", "Identity", "Neg", "Abs", "Add", "Mul", "Sub", "matmul", "matmul_add",
    "constant_subgraph", "constant_node", "dead_branch", "transpose_pair", "reshape_round_trip",
    "cast_no_op", "conv_bn",
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=7),
    seed=st.integers(0, 2**16),
    expose=st.one_of(st.none(), st.integers(0, 6)),
)
def test_exact_passes_keep_outputs(steps, seed, expose, assert_exact_rewrite):
    builder = ChainBuilder(np.random.default_rng(seed))
    for kind in steps:
        builder.step(kind)
    before = builder.model(expose)
    assert checks.graph_problems(before) == []
    after = io.clone(before)
    for name in EXACT_PASSES:
        after = spec.parse_pass(name)(after).model
    assert [v.name for v in after.graph.outputs] == [v.name for v in before.graph.outputs]
    assert len(after.graph) <= len(before.graph)
    assert_exact_rewrite(before, after)
