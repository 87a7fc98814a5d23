"""What `inspect` shows and what every report step records: size, params, nodes, ops."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import onnx
import onnx_ir as ir

from onnxcompress import io, walk


@dataclasses.dataclass
class TensorInfo:
    """A graph input or output: name, element type and shape (symbolic dims as strings)."""

    name: str
    dtype: str
    shape: list[int | str | None]


@dataclasses.dataclass
class ModelStats:
    """Static facts about a model, cheap to compute and comparable across pipeline steps."""

    opset: int
    producer: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    params: int
    size_bytes: int
    nodes: int
    op_histogram: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def model_stats(model: ir.Model, proto: onnx.ModelProto | None = None) -> ModelStats:
    """Compute the statistics of ``model`` (size is its serialized size in bytes; ``proto``: ``model`` already
    serialized with ``io.to_proto``, when the caller has it)."""
    graph = model.graph
    histogram = collections.Counter(_op_label(node) for node in walk.nodes(graph))
    return ModelStats(
        opset=model.opset_imports.get("", 0),
        producer=f"{model.producer_name or ''} {model.producer_version or ''}".strip(),
        inputs=[tensor_info(v) for v in graph.inputs if v.name not in graph.initializers],
        outputs=[tensor_info(v) for v in graph.outputs],
        params=parameter_count(model),
        size_bytes=proto.ByteSize() if proto is not None else serialized_size(model),
        nodes=sum(histogram.values()),
        op_histogram=dict(histogram.most_common()),
    )


def tensor_info(value: ir.Value) -> TensorInfo:
    """Describe one graph value."""
    dtype = value.dtype.name.lower() if value.dtype is not None else "unknown"
    shape: list[int | str | None] = []
    if value.shape is not None:
        shape = [d if isinstance(d, int) else (d.value if isinstance(d, ir.SymbolicDim) else None) for d in value.shape]
    return TensorInfo(value.name or "", dtype, shape)


def parameter_count(model: ir.Model) -> int:
    """Number of elements in all initializers and Constant nodes of the main graph."""
    count = sum(v.const_value.size for v in model.graph.initializers.values() if v.const_value is not None)
    for node in model.graph:
        if node.op_type == "Constant" and node.domain == "" and "value" in node.attributes:
            count += node.attributes["value"].as_tensor().size
    return count


def serialized_size(model: ir.Model) -> int:
    """Bytes the model takes on disk (protobuf plus external data)."""
    return io.to_proto(model).ByteSize()


def _op_label(node: ir.Node) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
