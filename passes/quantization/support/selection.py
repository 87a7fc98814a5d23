"""Which nodes a quantization pass touches: op types, the nodes ``exclude`` names (``passes/exclude.py``
matches the patterns), FP32 branches, fallback candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress import walk
from onnxcompress.errors import UsageError
from onnxcompress.passes.quantization.support.ort_bridge import Selection

WEIGHTED_OPS = ("Conv", "MatMul", "Gemm", "Attention", "LSTM")
# Inputs that must be stored weights for a node to be quantized: input 1, and an LSTM's recurrent weight too
# (ORT's LSTM rule leaves the node in float unless both are initializers).
STORED_WEIGHT_INPUTS = {"LSTM": (1, 2)}


def weight_inputs(op_type: str) -> tuple[int, ...]:
    """Indices of the inputs of a ``WEIGHTED_OPS`` node that ORT's quantizers need stored (``STORED_WEIGHT_INPUTS``)."""
    return STORED_WEIGHT_INPUTS.get(op_type, (1,))
# Nodes a rewrite put on purpose in an FP32 branch (``split-outliers``): never quantized, never smoothed.
FLOAT_BRANCH_SUFFIX = "/outliers"


def select(proto: onnx.ModelProto, op_types: Sequence[str], excluded: Sequence[str]) -> Selection:
    """The selection for ``op_types`` (checked when the pass was built) minus the ``excluded`` nodes, FP32 branches
    and standard Attention nodes."""
    names = [node.name for graph in walk.proto_graphs(proto.graph) for node in graph.node]
    return Selection(op_types=list(op_types), exclude=[*excluded, *(n for n in names if is_float_branch(n)), *standard_attention_nodes(proto)])


def standard_attention_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of ONNX's own ``Attention`` nodes (opset 23), in subgraphs too, which ORT's quantizers must not touch.

    They key on the op type alone and would rewrite one into the contrib ``QAttention``, which has
    other inputs and cannot load; its Q/K/V projections are MatMuls and are quantized as such.
    """
    return [node.name for graph in walk.proto_graphs(proto.graph) for node in graph.node
            if node.op_type == "Attention" and node.domain in ("", "ai.onnx")]


def nodes_touching(proto: onnx.ModelProto, tensors: Sequence[str]) -> list[str]:
    """Names of the nodes that read or write any of ``tensors``."""
    wanted = set(tensors)
    return [node.name for node in proto.graph.node if wanted.intersection(node.input) or wanted.intersection(node.output)]


def is_float_branch(name: str) -> bool:
    """True for a node that a rewrite meant to stay in FP32 (its name ends in ``FLOAT_BRANCH_SUFFIX``)."""
    return name.endswith(FLOAT_BRANCH_SUFFIX)


def fallback_candidates(proto: onnx.ModelProto, selection: Selection) -> list[str]:
    """Names of the weighted layers (Conv/MatMul/Gemm/Attention/LSTM with a constant weight) the selection quantizes,
    in subgraphs too (a merged decoder's are all in its ``If`` branches), each name once.

    A MatMul of two activations (attention scores) is not a candidate: no quantizer here touches it,
    so keeping it "in FP32" would spend the fallback on a no-op.
    """
    graphs = walk.proto_graphs(proto.graph)
    weights = {init.name for graph in graphs for init in graph.initializer}
    return list(dict.fromkeys(
        node.name
        for graph in graphs for node in graph.node
        if node.op_type in WEIGHTED_OPS and node.op_type in selection.op_types and node.name not in selection.exclude
        and all(i < len(node.input) and node.input[i] in weights for i in weight_inputs(node.op_type))
    ))


def output_tail(proto: onnx.ModelProto, selection: Selection) -> list[str]:
    """Names of the quantized nodes without weights between the last weighted layers and the outputs.

    Found going up from the graph outputs through producers and stopping at weighted layers: a
    detector's box decode and the Concat that puts box coordinates beside class scores under one
    scale. Quantizing these can ruin an output with no layer to blame, so the fallback may keep
    them in FP32 as one group. Gathers and weighted op types are never part of it.
    """
    weights = {init.name for init in proto.graph.initializer}
    producers = {out: node for node in proto.graph.node for out in node.output}
    ops = set(selection.op_types) - {*WEIGHTED_OPS, "Gather"}
    tail: list[str] = []
    seen: set[str] = set()
    pending = [value.name for value in proto.graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in seen or (node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in weights):
            continue
        seen.add(node.name)
        if node.op_type in ops and node.name not in selection.exclude and selection.covers(node.name):
            tail.append(node.name)
        pending.extend(name for name in node.input if name)
    return tail


def weight_sizes(proto: onnx.ModelProto, names: Sequence[str]) -> dict[str, int]:
    """Elements in each named node's initializer inputs (of every node so named, in subgraphs too): the cost (in FP32
    work) of keeping it unquantized."""
    graphs = walk.proto_graphs(proto.graph)
    sizes = {init.name: int(np.prod(init.dims)) for graph in graphs for init in graph.initializer}
    costs = dict.fromkeys(names, 0)
    for node in (node for graph in graphs for node in graph.node if node.name in costs):
        costs[node.name] += sum(sizes.get(i, 0) for i in node.input)
    return costs


def refuse_layers_only_in_subgraphs(model: ir.Model, op_types: list[str]) -> None:
    """Raise a one-line ``UsageError`` when every node of ``op_types`` that takes a weight (``WEIGHTED_OPS``) is inside
    an ``If`` or ``Loop`` body (a merged decoder holds all of them in its branches): ORT's static (QDQ) quantizer
    quantizes the main graph only, so the pass would change nothing and say so only in a note."""
    weighted = set(op_types) & set(WEIGHTED_OPS)
    inside = [node for node in ir.traversal.RecursiveGraphIterator(model.graph) if node.op_type in weighted and node.graph is not model.graph]
    if inside and not any(node.op_type in weighted for node in model.graph):
        raise UsageError(f"all {len(inside)} {'/'.join(sorted({n.op_type for n in inside}))} nodes are inside If/Loop branches (a merged "
                         "decoder's), which ONNX Runtime's static INT8 quantizer does not enter; quantize-dynamic quantizes them there")
