"""FP32 prefixes: cut where one tensor crosses, one per resolution, the fastest kept by quantize-static."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import fidelity, io, runtime
from onnxcompress.calibration import ArrayReader
from onnxcompress.errors import UsageError
from onnxcompress.passes import QuantizeStatic
from onnxcompress.passes.quantization.support.float_prefix import TOLERANCE, candidate_prefixes
from onnxcompress.passes.quantization.support.ort_bridge import with_shapes


def images(count: int, seed: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(size=(count, 3, 32, 32)).astype(np.float32)}


def crossing_tensors(proto, prefix_nodes) -> set[str]:
    """Activations made inside the prefix and read after it (or graph outputs)."""
    inside = set(prefix_nodes)
    made = {o for n in proto.graph.node if n.name in inside for o in n.output}
    read_after = {i for n in proto.graph.node if n.name not in inside for i in n.input}
    return made & (read_after | {o.name for o in proto.graph.output})


def test_each_prefix_hands_one_tensor_over_at_a_lower_resolution_than_the_last(mobilenet) -> None:
    proto = with_shapes(io.to_proto(mobilenet))
    prefixes = candidate_prefixes(proto)

    assert 2 <= len(prefixes) <= 3
    resolutions = [int(np.prod(p.shape[2:])) for p in prefixes]
    assert resolutions == sorted(set(resolutions), reverse=True)
    order = [n.name for n in proto.graph.node]
    for prefix in prefixes:
        assert list(prefix.nodes) == order[: len(prefix.nodes)] and prefix.nodes[-1] == prefix.last
        assert len(crossing_tensors(proto, prefix.nodes)) == 1


def test_chosen_prefix_is_the_shortest_near_the_measured_minimum_and_stays_fp32(mobilenet) -> None:
    model = io.clone(mobilenet)
    feeds = images(4, seed=1)
    reference = runtime.run(mobilenet, feeds)
    run = QuantizeStatic(fp32_prefix="fastest").apply(model, calibration=ArrayReader(images(32, seed=0), batch_size=16))

    chosen = run.details["fp32_prefix"]
    latencies = chosen["latency_ms"]
    assert "none" in latencies and len(latencies) >= 3 and all(ms > 0 for ms in latencies.values())
    fastest = min(latencies.values())
    within = [label for label, ms in latencies.items() if ms <= fastest * (1 + TOLERANCE)]
    assert chosen["chosen"] == within[0]
    proto = with_shapes(io.to_proto(mobilenet))
    prefix_nodes = {p.last: set(p.nodes) for p in candidate_prefixes(proto)}.get(chosen["chosen"].removeprefix("up to "), set())
    prefix_convs = {n.name for n in proto.graph.node if n.op_type == "Conv" and n.name in prefix_nodes}
    float_convs = {n.name for n in model.graph if n.op_type == "Conv" and n.inputs[1].producer() is None}
    assert float_convs == prefix_convs
    for optimization in ("disable", "all"):
        assert fidelity.compare(reference, runtime.run(model, feeds, optimization=optimization)).cosine > 0.99


def test_a_graph_without_cuts_says_there_is_no_prefix_to_try(mlp) -> None:
    run = QuantizeStatic(fp32_prefix="fastest").apply(mlp, calibration=ArrayReader({"x": np.ones((8, 16), np.float32)}, batch_size=8))
    assert "fp32_prefix" not in run.details
    assert any("no prefix to try" in line for line in run.notes)


def test_unknown_fp32_prefix_is_refused_in_one_line() -> None:
    with pytest.raises(UsageError, match="fp32_prefix must be") as info:
        QuantizeStatic(fp32_prefix="all")
    assert "\n" not in str(info.value)
