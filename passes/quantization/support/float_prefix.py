"""Leading parts of a CNN to keep in FP32 when int8 would be slower there, chosen by measuring them.

On small mobile nets int8 loses at the highest resolutions: ORT's float convs fuse hard-swish for
free, while in int8 it costs a QLinearAdd and a QLinearMul. On the MobileNetV3-style net trained on
digits (224×224), keeping the stem and first block in FP32 made it faster at batch 1 and batch 8
(``docs/measured.md``, ``docs/benchmarks/bench_quantization.md``).
Which prefix pays depends on the net and the machine, so ``quantize-static`` can try a few at
batch 1 and keep the fastest, or the shortest within 3% of it: batch-1 timings of these nets move by
that much from round to round, and a longer prefix measured 1% faster at batch 1 was 40% slower at
batch 8.

A prefix ends where one tensor alone carries everything forward (a cut), so the FP32 part hands
over through a single QuantizeLinear. At each resolution the candidate is the last of the
narrowest such cuts: the end of a block rather than the wide tensor inside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnxcompress import bench

ROUNDS = 5
ROUND_SECONDS = 0.3
MAX_PREFIXES = 3
TOLERANCE = 0.03  # within this of the best, the shorter prefix wins: more int8, and timing noise is this large


@dataclasses.dataclass(frozen=True)
class Prefix:
    """The nodes up to and including ``last`` (in graph order), and the one 4-D tensor that leaves them."""

    last: str
    nodes: tuple[str, ...]
    shape: tuple[int, ...]


def candidate_prefixes(proto: onnx.ModelProto) -> list[Prefix]:
    """For each of the first ``MAX_PREFIXES`` resolutions, the prefix ending at its last narrowest cut."""
    best: dict[int, Prefix] = {}
    for prefix in _cuts(proto):
        spatial, size = int(np.prod(prefix.shape[2:])), int(np.prod(prefix.shape[1:]))
        current = best.get(spatial)
        if current is None or size <= int(np.prod(current.shape[1:])):
            best[spatial] = prefix
    return [best[spatial] for spatial in sorted(best, reverse=True)[:MAX_PREFIXES]]


def _cuts(proto: onnx.ModelProto) -> list[Prefix]:
    """Prefixes after which exactly one activation, 4-D with a known shape, is still needed."""
    constants = {t.name for t in proto.graph.initializer}
    outputs = {o.name for o in proto.graph.output}
    shapes = _static_shapes(proto)
    last_use = {name: index for index, node in enumerate(proto.graph.node) for name in node.input}
    live: set[str] = set()
    cuts = []
    for index, node in enumerate(proto.graph.node):
        live = {t for t in live | set(node.output) if t not in constants and (last_use.get(t, -1) > index or t in outputs)}
        only = next(iter(live)) if len(live) == 1 else None
        if only is not None and only not in outputs and len(shapes.get(only, ())) == 4:
            names = tuple(n.name for n in proto.graph.node[: index + 1])
            cuts.append(Prefix(node.name, names, shapes[only]))
    return cuts


def _static_shapes(proto: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shapes whose every dimension but the batch is known, by tensor name."""
    shapes = {}
    for value in proto.graph.value_info:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims and all(dims[1:]):
            shapes[value.name] = (1, *dims[1:])
    return shapes


def fastest(quantized: Mapping[str, onnx.ModelProto], feeds: Mapping[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The label of the first model in ``quantized`` (shortest prefix first) within ``TOLERANCE`` of the
    fastest on ``feeds``, and each one's median latency in ms."""
    sessions = bench.sessions([ir.serde.deserialize_model(proto) for proto in quantized.values()])
    batch = len(next(iter(feeds.values())))
    latencies = bench.measure(sessions, [feeds] * len(sessions), batch=batch, rounds=ROUNDS, round_seconds=ROUND_SECONDS)
    medians = {label: latency.median_ms for label, latency in zip(quantized, latencies)}
    best = min(medians.values())
    return next(label for label, ms in medians.items() if ms <= best * (1 + TOLERANCE)), medians
