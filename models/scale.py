"""Graphs of any node count, for measuring how passes and checks grow with the size of a model
(``tools/bench_node_count.py``, the pipeline's scaling test).

``chain(n)``: ``n`` alternating Relu/Neg on a ``[1, 16]`` float input, nothing to fold or fuse (every
step's cost is the pipeline's own). ``conv_chain(n)``: residual blocks of six nodes on a
``[1, 8, 8, 8]`` input, each with its own weights: ``Conv → BatchNormalization → Tanh → Add`` (the block's
input) ``→ Mul`` by a scale ``Sqrt`` computes from a constant, so ``fold-constants`` folds one node a block
and ``fuse`` folds every BatchNormalization into its Conv. Each block is a contraction (a scale of about
0.75 on the input plus a Tanh of small weights), so over any number of blocks values stay below 3 and a
rounding difference early on (a fused Conv's) fades instead of growing.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS = 8
SIDE = 8
BLOCK_NODES = 6


def chain(nodes: int) -> onnx.ModelProto:
    """``nodes`` alternating Relu and Neg, one after the other."""
    names = ["x", *(f"t{i}" for i in range(1, nodes)), "y"]
    graph = helper.make_graph(
        [helper.make_node("Relu" if i % 2 == 0 else "Neg", [names[i]], [names[i + 1]], name=f"n{i}") for i in range(nodes)],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def conv_chain(nodes: int, seed: int = 0) -> onnx.ModelProto:
    """``nodes // BLOCK_NODES`` residual Conv/BatchNormalization/Tanh/Add/Sqrt/Mul blocks (see the module), seeded weights."""
    rng = np.random.default_rng(seed)
    graph_nodes, initializers, current = [], [], "x"
    for b in range(max(nodes // BLOCK_NODES, 1)):
        tensors = {
            "w": rng.standard_normal((CHANNELS, CHANNELS, 1, 1)) * 0.05,
            "b": rng.standard_normal(CHANNELS) * 0.01,
            "gamma": rng.uniform(0.9, 1.1, CHANNELS),
            "beta": rng.standard_normal(CHANNELS) * 0.01,
            "mean": rng.standard_normal(CHANNELS) * 0.01,
            "var": rng.uniform(0.9, 1.1, CHANNELS),
            "square": rng.uniform(0.5, 0.6, (CHANNELS, 1, 1)),
        }
        initializers += [numpy_helper.from_array(array.astype(np.float32), f"{name}{b}") for name, array in tensors.items()]
        out = f"block{b}"
        graph_nodes += [
            helper.make_node("Conv", [current, f"w{b}", f"b{b}"], [f"conv{b}"], name=f"conv{b}"),
            helper.make_node("BatchNormalization", [f"conv{b}", f"gamma{b}", f"beta{b}", f"mean{b}", f"var{b}"], [f"bn{b}"], name=f"bn{b}"),
            helper.make_node("Tanh", [f"bn{b}"], [f"tanh{b}"], name=f"tanh{b}"),
            helper.make_node("Add", [f"tanh{b}", current], [f"add{b}"], name=f"add{b}"),
            helper.make_node("Sqrt", [f"square{b}"], [f"scale{b}"], name=f"sqrt{b}"),
            helper.make_node("Mul", [f"add{b}", f"scale{b}"], [out], name=f"mul{b}"),
        ]
        current = out
    graph_nodes[-1].output[0] = "y"
    shape = [1, CHANNELS, SIDE, SIDE]
    graph = helper.make_graph(graph_nodes, "conv_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
