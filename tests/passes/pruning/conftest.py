"""Fixtures for the pruning tests: ONNX-text models with random weights, and checking a pruned model."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import checks, runtime


def text_model(text: str, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> ir.Model:
    """Parse ONNX text and attach random float32 initializers with the given shapes."""
    rng = np.random.default_rng(seed)
    proto = onnx.parser.parse_model(text)
    for name, shape in shapes.items():
        array = rng.standard_normal(shape).astype(np.float32) * 0.5
        if name.startswith("var"):
            array = np.abs(array) + 0.5
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
    return ir.serde.deserialize_model(proto)


def run_everywhere(model: ir.Model, feeds) -> dict[str, np.ndarray]:
    """Run at ORT_DISABLE_ALL and ORT_ENABLE_ALL (a bad rewrite may only fail at DISABLE_ALL); return the former."""
    assert checks.graph_problems(model) == []
    disabled = runtime.run(model, feeds, optimization="disable")
    enabled = runtime.run(model, feeds, optimization="all")
    for name, value in disabled.items():
        np.testing.assert_allclose(enabled[name], value, rtol=1e-4, atol=1e-4)
    return disabled


@pytest.fixture
def make_model():
    """``make_model(text, shapes, seed=0)``: an ONNX-text model with random initializers."""
    return text_model


@pytest.fixture
def check_pruned():
    """``check(before, after, feeds)``: valid, runs at both levels, same output shapes; returns outputs."""

    def check(before: ir.Model, after: ir.Model, feeds) -> dict[str, np.ndarray]:
        expected = runtime.run(before, feeds, optimization="disable")
        got = run_everywhere(after, feeds)
        assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in expected.items()}
        return got

    return check
