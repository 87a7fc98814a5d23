"""Both quantizers on every model-zoo architecture of the onnx wheel (IR 3, opset 9, weights made by
ConstantOfShape): the result must load and run in ORT at ``disable`` and ``all`` and keep the outputs."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress import io, runtime
from onnxcompress.calibration import SyntheticReader
from onnxcompress.passes.quantization.quantize_dynamic import QuantizeDynamic
from onnxcompress.passes.quantization.quantize_static import QuantizeStatic

MIN_COSINE = 0.99


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _quantized(kind: str, model):
    """``model`` quantized (a copy) by ``kind``, with synthetic calibration data for static INT8."""
    if kind == "static":
        return QuantizeStatic().apply(io.clone(model), calibration=SyntheticReader(model, samples=4, batch_size=2))
    return QuantizeDynamic()(io.clone(model))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_every_zoo_architecture_quantizes_to_a_model_ort_runs(light_models, kind):
    for path in light_models:
        model = io.load(path)
        feeds = runtime.synthetic_inputs(model)
        reference = runtime.run(model, feeds, optimization="disable")
        run = _quantized(kind, model)
        quantized = run.model
        assert quantized.ir_version >= 4 and not set(quantized.graph.initializers) & {v.name for v in quantized.graph.inputs}
        told = ("computed in the graph, not stored", "quantized no layer")
        assert any(phrase in note for note in run.notes for phrase in told), path.stem
        for level in ("disable", "all"):
            outputs = runtime.run(quantized, feeds, optimization=level)
            for name, expected in reference.items():
                assert _cosine(outputs[name], expected) >= MIN_COSINE, (path.stem, level, name)
