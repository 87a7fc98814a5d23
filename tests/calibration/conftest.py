"""Fixtures of the calibration tests: known distributions, a small ONNX-text model, models with a fixed or free
batch and with inputs that carry no samples."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress.calibration import thresholds
from onnxcompress.calibration.histogram import StreamingHistogram

SAMPLES = 20_000


def _distributions() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "normal": rng.standard_normal(SAMPLES),
        "uniform": rng.uniform(-2.0, 5.0, SAMPLES),
        "heavy_tailed": rng.standard_t(2, SAMPLES),
        "relu_half_normal": np.maximum(rng.standard_normal(SAMPLES), 0.0),
    }


DISTRIBUTIONS = _distributions()


@pytest.fixture(params=sorted(DISTRIBUTIONS))
def distribution(request) -> np.ndarray:
    """One of: normal, uniform on [-2, 5], Student-t with 2 dof (heavy tails), ReLU of a normal."""
    return DISTRIBUTIONS[request.param]


SMALL_MODEL_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
small (float[N, 4] x) => (float[N, 2] y) {
  w = Constant <value = float[4, 2] {1, -1, 0.5, 2, -2, 0.25, 1, 1}> ()
  h = MatMul(x, w)
  r = Relu(h)
  y = Mul(r, h)
}
"""
SMALL_WEIGHTS = np.array([[1, -1], [0.5, 2], [-2, 0.25], [1, 1]], dtype=np.float32)


@pytest.fixture
def small_model() -> ir.Model:
    """``y = Relu(x @ w) * (x @ w)`` with a dynamic batch; intermediate tensors ``h`` and ``r``."""
    return ir.from_onnx_text(SMALL_MODEL_TEXT)


def _small_model_tensors(x: np.ndarray) -> dict[str, np.ndarray]:
    h = x @ SMALL_WEIGHTS
    r = np.maximum(h, 0)
    return {"h": h, "r": r, "y": r * h}


@pytest.fixture(scope="session")
def small_reference():
    """``x -> {"h", "r", "y"}``: the small model's tensors computed with NumPy."""
    return _small_model_tensors


def brute_windows(histogram: StreamingHistogram, min_bins: int) -> list[tuple[int, int, float, float]]:
    """Every window [-i*w, i*w) clipped to the data with at least ``min_bins`` bins, by a loop."""
    first, used, width = histogram.first_key, histogram.used_bins, histogram.width
    last = first + used - 1
    windows = []
    for reach in range(1, max(-first, last + 1) + 1):
        low_key, high_key = max(-reach, first), min(reach - 1, last)
        if high_key - low_key + 1 >= min(min_bins, used):
            low = max(-reach * width, histogram.minimum)
            high = min(reach * width, histogram.maximum)
            windows.append((low_key - first, high_key - first + 1, low, high))
    return windows


def brute_kl(counts: np.ndarray, start: int, stop: int, levels: int) -> float:
    """KL(P || Q) written out bin by bin, as in TensorRT's description."""
    sliced = [float(c) for c in counts[start:stop]]
    reference = list(sliced)
    reference[0] += float(counts[:start].sum())
    reference[-1] += float(counts[stop:].sum())
    length = len(sliced)
    chunk_of = [j * levels // length for j in range(length)]
    quantized = []
    for j in range(length):
        members = [k for k in range(length) if chunk_of[k] == chunk_of[j]]
        nonzero = sum(1 for k in members if reference[k] > 0)
        quantized.append(sum(sliced[k] for k in members) / nonzero if reference[j] > 0 else 0.0)
    p_total, q_total = sum(reference), sum(quantized)
    divergence = 0.0
    for p, q in zip(reference, quantized):
        if p > 0:
            q_normalised = q / q_total if q_total > 0 else 0.0
            divergence += p / p_total * (math.log(p / p_total) - math.log(max(q_normalised, thresholds.EPS)))
    return divergence


def brute_mse(counts: np.ndarray, centers: np.ndarray, low: float, high: float, levels: int) -> float:
    """Squared error of quantizing each bin centre to ``levels`` steps on [low, high], bin by bin."""
    step = (high - low) / (levels - 1)
    error = 0.0
    for count, center in zip(counts, centers):
        code = min(max(round((center - low) / step), 0), levels - 1) if step > 0 else 0
        error += count * (center - (low + code * step)) ** 2
    return error


def brute_centers(histogram: StreamingHistogram) -> np.ndarray:
    """Bin centres, clipped to the data's min and max."""
    edges = histogram.edges()
    return np.clip((edges[:-1] + edges[1:]) / 2, histogram.minimum, histogram.maximum)


@pytest.fixture(scope="session")
def brute() -> SimpleNamespace:
    """Loop-by-loop references of the threshold search: ``windows``, ``kl``, ``mse``, ``centers``."""
    return SimpleNamespace(windows=brute_windows, kl=brute_kl, mse=brute_mse, centers=brute_centers)


def conv_model_proto(batch: int | str) -> onnx.ModelProto:
    """``y = Relu(Conv(x, w) + b)`` on ``float[batch, 3, 8, 8]`` images, with stored weights (as exporters write them)."""
    rng = np.random.default_rng(2)
    weight = onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bias = onnx.numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), onnx.helper.make_node("Relu", ["c"], ["y"])],
        "conv",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 4, 8, 8])],
        [weight, bias],
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="session")
def conv_model():
    """``batch -> ir.Model``: the Conv net of ``conv_model_proto`` with that first dim (1, or a name for a free batch)."""
    return lambda batch: ir.from_proto(conv_model_proto(batch))


STATEFUL_MODEL_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
stateful (float[BATCH, 4] x, float gain, float[2, 4] state, int64 step, float[BATCH, 4] bias) => (float[BATCH, 4] y) {
  scaled = Mul(x, gain)
  row = Gather <axis = 0> (state, step)
  shifted = Add(scaled, row)
  y = Add(shifted, bias)
}
"""


@pytest.fixture(scope="session")
def stateful_model():
    """``batch -> ir.Model`` of ``y = x * gain + state[step] + bias``: a float scalar, a fixed-shape state and an
    int64 scalar choosing its row, beside per-sample ``x`` and ``bias`` of first dim ``batch`` ("1" or a name)."""
    return lambda batch: ir.from_onnx_text(STATEFUL_MODEL_TEXT.replace("BATCH", batch))


def _stateful_feeds(samples: int = 16, **overrides) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    feeds = {
        "x": rng.standard_normal((samples, 4)).astype(np.float32),
        "gain": np.array(2.5, np.float32),
        "state": rng.standard_normal((2, 4)).astype(np.float32),
        "step": np.array(1, np.int64),
        "bias": rng.standard_normal(4).astype(np.float32),
    }
    feeds.update(overrides)
    return {name: array for name, array in feeds.items() if array is not None}


@pytest.fixture(scope="session")
def stateful_feeds():
    """``(samples=16, **overrides) -> feeds`` of the stateful model: ``x`` per sample, the gain, state, step and
    bias (one sample's, without its batch axis) given once; an override of None leaves that input out."""
    return _stateful_feeds
