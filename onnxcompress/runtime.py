"""ONNX Runtime CPU sessions and synthetic inputs built from a model's signature."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from onnxcompress import io
from onnxcompress.errors import UsageError

OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
DEFAULT_THREADS = 2
DEFAULT_DYNAMIC_DIM = 16
Feeds = dict[str, np.ndarray]


def session(
    model: ir.Model | str | os.PathLike,
    *,
    threads: int = DEFAULT_THREADS,
    optimization: str = "all",
) -> ort.InferenceSession:
    """An ORT CPU session; ``optimization`` is one of disable/basic/extended/all."""
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # ORT errors are re-raised as one-line UsageErrors; no stderr dump
    try:
        if isinstance(model, ir.Model):
            return _session_from_ir(model, options)
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several unrelated types for invalid graphs
        raise UsageError(f"ONNX Runtime cannot load the model: {_first_line(exc)}") from None


def run(
    model: ir.Model | ort.InferenceSession,
    feeds: Mapping[str, np.ndarray],
    *,
    threads: int = DEFAULT_THREADS,
    optimization: str = "all",
) -> dict[str, np.ndarray]:
    """Run once and return the outputs by name."""
    sess = model if isinstance(model, ort.InferenceSession) else session(model, threads=threads, optimization=optimization)
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    try:
        values = sess.run(names, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as exc:
        raise UsageError(f"ONNX Runtime failed to run the model: {_first_line(exc)}") from None
    return dict(zip(names, values))


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME:d0,d1,...`` pins for dynamic input dimensions."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise UsageError(f"bad --input-shape {spec!r}: expected NAME:d0,d1,... with integers") from None
    return shapes


def synthetic_inputs(
    model: ir.Model,
    *,
    batch: int = 1,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
) -> Feeds:
    """Random inputs matching the model's signature.

    Dynamic dims are pinned by ``shapes`` or defaulted (first dim = ``batch``, others 16);
    integer inputs that index an embedding table stay inside its vocabulary; masks are ones.
    """
    rng = np.random.default_rng(seed)
    shapes = dict(shapes or {})
    graph = model.graph
    unknown = set(shapes) - {v.name for v in graph.inputs}
    if unknown:
        raise UsageError(f"--input-shape names unknown inputs {sorted(unknown)}; inputs are {[v.name for v in graph.inputs]}")
    feeds: Feeds = {}
    for value in graph.inputs:
        if value.name in graph.initializers:
            continue
        shape = shapes.get(value.name) or _default_shape(value, batch)
        feeds[value.name] = _random_array(value, shape, rng)
    return feeds


def _default_shape(value: ir.Value, batch: int) -> tuple[int, ...]:
    if value.shape is None:
        raise UsageError(f"input {value.name!r} has no shape; pin it with --input-shape {value.name}:d0,d1,...")
    dims = []
    for axis, dim in enumerate(value.shape):
        if isinstance(dim, int):
            dims.append(dim)
        else:
            dims.append(batch if axis == 0 else DEFAULT_DYNAMIC_DIM)
    return tuple(dims)


def _random_array(value: ir.Value, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
    name = (value.name or "").lower()
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        if re.search(r"mask", name):
            return np.ones(shape, dtype=dtype)
        if re.search(r"token_type|segment", name):
            return np.zeros(shape, dtype=dtype)
        high = _embedding_vocab(value) or 10
        return rng.integers(0, high, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    raise UsageError(f"input {value.name!r} has type {dtype} that synthetic inputs do not support")


def _embedding_vocab(value: ir.Value) -> int | None:
    """Rows of the embedding table this integer input indexes, looking through casts/reshapes."""
    frontier, seen = [value], set()
    while frontier:
        current = frontier.pop()
        for node, index in current.uses():
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "Gather" and index == 1:
                table = node.inputs[0]
                if table is not None and table.const_value is not None:
                    return int(table.const_value.shape[0])
            if node.op_type in {"Cast", "Unsqueeze", "Reshape", "Squeeze", "Flatten", "Identity"} and index == 0:
                frontier.extend(node.outputs)
    return None


def _session_from_ir(model: ir.Model, options: ort.SessionOptions) -> ort.InferenceSession:
    if io.initializer_bytes(model) < io.EXTERNAL_DATA_THRESHOLD:
        data = io.to_proto(model).SerializeToString()
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory(prefix="onnxcompress-") as tmp:
        path = Path(tmp) / "model.onnx"
        io.save(model, path)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
