"""Which nodes a quantization pass touches: op types, ``exclude`` names/glob patterns, fallback candidates.

An option that selects nothing is an error, not a no-op: silently ignored options are one of the
issue's complaints about today's tools.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import numpy as np
import onnx

from onnxcompress.errors import UsageError
from onnxcompress.passes.quantization.ort_bridge import Selection

WEIGHTED_OPS = ("Conv", "MatMul", "Gemm", "Attention")


def select(proto: onnx.ModelProto, op_types: Sequence[str], supported: Sequence[str], exclude: Sequence[str] | None) -> Selection:
    """The selection for ``op_types`` minus nodes whose names match an ``exclude`` pattern."""
    unsupported = sorted(set(op_types) - set(supported))
    if unsupported:
        raise UsageError(f"op_types {unsupported} cannot be quantized here; supported: {', '.join(sorted(supported))}")
    names = [node.name for node in proto.graph.node]
    excluded: list[str] = []
    for pattern in exclude or []:
        matched = fnmatch.filter(names, pattern)
        if not matched:
            raise UsageError(f"exclude pattern {pattern!r} matches no node name")
        excluded.extend(m for m in matched if m not in excluded)
    return Selection(op_types=list(op_types), exclude=excluded)


def fallback_candidates(proto: onnx.ModelProto, selection: Selection) -> list[str]:
    """Names of the weighted layers (Conv/MatMul/Gemm/Attention) the selection quantizes."""
    return [
        node.name
        for node in proto.graph.node
        if node.op_type in WEIGHTED_OPS and node.op_type in selection.op_types and node.name not in selection.exclude
    ]


def weight_sizes(proto: onnx.ModelProto, names: Sequence[str]) -> dict[str, int]:
    """Elements in each named node's initializer inputs: the cost (in FP32 work) of keeping it unquantized."""
    sizes = {init.name: int(np.prod(init.dims)) for init in proto.graph.initializer}
    wanted = set(names)
    return {node.name: sum(sizes.get(i, 0) for i in node.input) for node in proto.graph.node if node.name in wanted}
