"""Q/DQ pairs ORT left unfused: float layers that still sit between DequantizeLinear and QuantizeLinear.

A QDQ model is only fast if ORT's graph optimizer turns every DQ → op → Q group into an integer
kernel (QLinearConv, QGemm, MatMulIntegerToFloat, …). A group it cannot fuse runs in FP32 *and*
pays for the extra Q/DQ: the classic "quantized model slower than FP32" bug. We ask ORT for the
graph it will actually run (``optimized_model_filepath`` at ENABLE_ALL) and count those layers.
"""

from __future__ import annotations

import collections
import dataclasses
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

from onnxcompress.errors import UsageError, first_line

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


@dataclasses.dataclass
class Unfused:
    """Float layers left between DQ and Q by ORT, by op type, and the Q/DQ nodes still in its graph."""

    layers: dict[str, int]
    examples: list[str]
    quantize_nodes: int
    dequantize_nodes: int

    @property
    def count(self) -> int:
        """How many float layers ORT runs between a DequantizeLinear and a QuantizeLinear."""
        return sum(self.layers.values())

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"count": self.count, **dataclasses.asdict(self)}


def optimized_graph(proto: onnx.ModelProto, threads: int = 1) -> onnx.ModelProto:
    """The graph ORT's CPU EP runs after its ENABLE_ALL optimizations."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="onnxcompress-qdq-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        options.optimized_model_filepath = str(path)
        try:
            ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several unrelated types for invalid graphs
            raise UsageError(f"ONNX Runtime cannot load the quantized model: {first_line(exc)}") from None
        return onnx.load(str(path))


def count_unfused(graph: onnx.GraphProto) -> Unfused:
    """Count non-Q/DQ nodes that read a DequantizeLinear output and feed a QuantizeLinear."""
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    layers: collections.Counter[str] = collections.Counter()
    examples = []
    for node in graph.node:
        if node.op_type in QDQ_OPS:
            continue
        reads_dq = any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input)
        feeds_q = any(c.op_type == "QuantizeLinear" for o in node.output for c in consumers[o])
        if reads_dq and feeds_q:
            layers[node.op_type] += 1
            examples.append(node.name or node.op_type)
    ops = collections.Counter(n.op_type for n in graph.node)
    return Unfused(dict(layers), examples[:5], ops["QuantizeLinear"], ops["DequantizeLinear"])


def unfused_after_ort(proto: onnx.ModelProto) -> Unfused:
    """``count_unfused`` on the graph ORT will actually run for ``proto``."""
    return count_unfused(optimized_graph(proto).graph)
