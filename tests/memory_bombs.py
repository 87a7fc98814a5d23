"""Memory bombs: tiny models whose constant subgraphs expand to 8-10 GB once evaluated, shared by the
fold-constants tests and the every-command matrix (importable from tests: pyproject puts ``tests`` on the path)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper, numpy_helper


def constant_node(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name))


def bomb_model(nodes: list[onnx.NodeProto]) -> ir.Model:
    """``y = f(x)`` for ``x: float[1]``, from ``nodes``."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph(nodes, "bomb", [x], [y])
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


def _reduced_into_y(big: str) -> list[onnx.NodeProto]:
    return [helper.make_node("ReduceMax", [big], ["m"], keepdims=0), helper.make_node("Add", ["x", "m"], ["y"])]


def _expand_bomb(shape: list[int]) -> list[onnx.NodeProto]:
    """Nodes making ``big``: a float32 1.0 expanded to ``shape``."""
    return [
        constant_node("one", np.float32(1)),
        constant_node("shape", np.array(shape, np.int64)),
        helper.make_node("Expand", ["one", "shape"], ["big"]),
    ]


def expand_bomb(shape: list[int] = [2, 10**9]) -> ir.Model:  # noqa: B006  (never mutated)
    """``y = x + max(expand(1.0, shape))``: 8 GB once folded at the default shape."""
    return bomb_model([*_expand_bomb(shape), *_reduced_into_y("big")])


def tile_bomb() -> ir.Model:
    """A 1,000-element constant tiled 2,000,000 times: 8 GB."""
    return bomb_model([
        constant_node("row", np.ones(1000, np.float32)),
        constant_node("repeats", np.array([2_000_000], np.int64)),
        helper.make_node("Tile", ["row", "repeats"], ["big"]),
        *_reduced_into_y("big"),
    ])


def range_bomb() -> ir.Model:
    """``Range(0, 2e9, 1)`` in float32: 8 GB."""
    return bomb_model([
        constant_node("start", np.float32(0)),
        constant_node("limit", np.float32(2e9)),
        constant_node("delta", np.float32(1)),
        helper.make_node("Range", ["start", "limit", "delta"], ["big"]),
        *_reduced_into_y("big"),
    ])


def broadcast_bomb() -> ir.Model:
    """A [50000, 1] column plus a [1, 50000] row: 10 GB from two 200 kB constants."""
    return bomb_model([
        constant_node("col", np.ones((50_000, 1), np.float32)),
        constant_node("row", np.ones((1, 50_000), np.float32)),
        helper.make_node("Add", ["col", "row"], ["big"]),
        *_reduced_into_y("big"),
    ])


def dead_bomb() -> ir.Model:
    """An 8 GB Expand whose output nothing reads."""
    return bomb_model([*_expand_bomb([2, 10**9]), helper.make_node("Identity", ["x"], ["y"])])


def loop_bomb(shape: list[int] = [2, 10**9]) -> ir.Model:  # noqa: B006  (never mutated)
    """A ``Loop`` with trip count 0 whose body expands to ``shape`` (8 GB by default): ORT never runs the body."""
    state = [
        helper.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
        helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, []),
        helper.make_tensor_value_info("v", onnx.TensorProto.FLOAT, [1]),
    ]
    out = [
        helper.make_tensor_value_info("c2", onnx.TensorProto.BOOL, []),
        helper.make_tensor_value_info("v2", onnx.TensorProto.FLOAT, [1]),
    ]
    body_nodes = [
        *_expand_bomb(shape),
        helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
        helper.make_node("Add", ["v", "s"], ["v2"]),
        helper.make_node("Identity", ["c"], ["c2"]),
    ]
    body = helper.make_graph(body_nodes, "body", state, out)
    return bomb_model([
        constant_node("trips", np.int64(0)),
        constant_node("cond", np.bool_(True)),
        helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body),
    ])


BOMBS = {
    "expand": expand_bomb,
    "expand_1gb": lambda: expand_bomb([2, 125_000_000]),  # under the subprocess's cap: a regression shows in its peak
    "tile": tile_bomb,
    "range": range_bomb,
    "broadcast": broadcast_bomb,
    "dead": dead_bomb,
    "loop": loop_bomb,
}
