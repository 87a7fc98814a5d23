"""ONNX Runtime CPU sessions, runs that say what to do when synthetic inputs fail, and ``--input-shape`` pins.

Synthetic inputs themselves are made in ``onnxcompress.synthetic_inputs``; ``synthetic_inputs`` is
re-exported here, where every command takes it from.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from onnxcompress import io
from onnxcompress.defaults import DEFAULT_THREADS, MAX_THREADS
from onnxcompress.errors import UsageError, first_line
from onnxcompress.synthetic_inputs import (  # noqa: F401  (re-exported: every command takes them from here)
    SyntheticFeeds,
    describe_shapes,
    dynamic_inputs,
    input_shapes,
    synthetic_inputs,
    value_dtype,
)

OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
Feeds = dict[str, np.ndarray]
# ORT's words when a tensor cannot be had: the machine has no room for it, or ORT caps a tensor's size
ALLOCATION_FAILURE = re.compile(r"Failed to allocate memory for requested buffer of size (\d+)")
SIZE_CAP = re.compile(r"would require more than (\d+) bytes")
BROADCAST_ATTENTION_MASK = "inconsistent q_sequence_length (between attn_mask and Q)"
_RUN_THREADS: contextvars.ContextVar[int] = contextvars.ContextVar("run_threads", default=DEFAULT_THREADS)


def resolve_threads(threads: int | None = None) -> int:
    """``threads``, or when None the ORT threads of the run in progress (``run_threads``), else ``DEFAULT_THREADS``."""
    return _RUN_THREADS.get() if threads is None else threads


@contextlib.contextmanager
def run_threads(threads: int) -> Iterator[None]:
    """Within the block, sessions made without ``threads`` get ``threads``: a pass's own runs (calibration, timing,
    budget checks) then use the run's ``--threads``, and one ORT thread in a Ray task that holds one CPU."""
    token = _RUN_THREADS.set(threads)
    try:
        yield
    finally:
        _RUN_THREADS.reset(token)


# numpy types ORT's Python API does not map itself (ml_dtypes'): fed as OrtValues of their ONNX type
ONNX_TYPE_OF = {
    np.dtype(t.numpy()): t.value
    for t in (ir.DataType.BFLOAT16, ir.DataType.FLOAT8E4M3FN, ir.DataType.FLOAT8E4M3FNUZ, ir.DataType.FLOAT8E5M2, ir.DataType.FLOAT8E5M2FNUZ)
}


def session(
    model: ir.Model | io.Snapshot | bytes | str | os.PathLike,
    *,
    threads: int | None = None,
    optimization: str = "all",
    affinities: str | None = None,
) -> ort.InferenceSession:
    """An ORT CPU session; ``optimization`` is one of disable/basic/extended/all; ``threads`` from 1 to ``MAX_THREADS``
    (None: ``resolve_threads``);
    ``affinities`` pins the intra-op pool's threads (ORT's ``session.intra_op_thread_affinities``, see ``bench.sessions``).
    A ``Snapshot`` is loaded from the bytes it holds, ``bytes`` as they are (a serialized model, as trials ship them),
    an ``ir.Model`` serialized first."""
    threads = resolve_threads(threads)
    if not 1 <= threads <= MAX_THREADS:  # thousands of spinning ORT threads make a 2 s run take minutes
        raise UsageError(f"threads={threads} is outside 1..{MAX_THREADS} (four per core on this machine)")
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # ORT errors are re-raised as one-line UsageErrors; no stderr dump
    if affinities:
        options.add_session_config_entry("session.intra_op_thread_affinities", affinities)
    try:
        data = model if isinstance(model, bytes) else model.data if isinstance(model, io.Snapshot) else None
        if data is not None:
            return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        if isinstance(model, (ir.Model, io.Snapshot)):
            return _session_from_ir(model if isinstance(model, ir.Model) else model.copy(), options)
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several unrelated types for invalid graphs
        raise UsageError(f"ONNX Runtime cannot load the model: {first_line(exc)}") from None


def run(
    model: ir.Model | io.Snapshot | ort.InferenceSession,
    feeds: Mapping[str, np.ndarray],
    *,
    threads: int | None = None,
    optimization: str = "all",
) -> dict[str, np.ndarray]:
    """Run once and return the outputs by name.

    A failure is a one-line ``UsageError``; on synthetic inputs no model has run on yet, it says which
    input to supply (``SyntheticFeeds.fix``), since the inputs are then the likelier culprit.
    """
    sess = model if isinstance(model, ort.InferenceSession) else session(model, threads=threads, optimization=optimization)
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in (*sess.get_inputs(), *sess.get_overridable_initializers())}  # a fed default overrides it
    try:
        values = sess.run(names, ort_feeds({k: v for k, v in feeds.items() if k in wanted}))
    except Exception as exc:
        raise UsageError(_run_failure(exc, feeds)) from None
    if isinstance(feeds, SyntheticFeeds):
        feeds.ran = True
    return dict(zip(names, values))


def at_declared_precision(model: ir.Model, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds`` with each float array cast to the float type ``model`` declares for that input (a float16 model
    compared with its float32 original gets the same values, rounded); other arrays as they are."""
    declared = {value.name: value_dtype(value) for value in model.graph.inputs}
    return {name: array.astype(declared[name]) if _floats(array) and _floats(declared.get(name)) and array.dtype != declared[name] else array
            for name, array in feeds.items()}


def _floats(kind: object) -> bool:
    """Whether ``kind`` (an array or a numpy type) holds floating-point values (ml_dtypes' bfloat16 included)."""
    dtype = getattr(kind, "dtype", kind)
    return dtype is not None and (np.issubdtype(dtype, np.floating) or dtype in ONNX_TYPE_OF)


def ort_feeds(feeds: Mapping[str, object]) -> dict[str, object]:
    """``feeds`` as ORT takes them: bfloat16 and float8 arrays as OrtValues (its Python API has no numpy type for them)."""
    return {name: _ort_value(value) for name, value in feeds.items()}


def _ort_value(value: object) -> object:
    dtype = getattr(value, "dtype", None)
    if dtype not in ONNX_TYPE_OF:
        return value
    bits = np.ascontiguousarray(value).view(np.uint16 if dtype.itemsize == 2 else np.uint8)
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, ONNX_TYPE_OF[dtype])


def _run_failure(exc: BaseException, feeds: Mapping[str, object]) -> str:
    allocation, capped = ALLOCATION_FAILURE.search(str(exc)), SIZE_CAP.search(str(exc))
    if allocation:  # the model's own activations, whatever the inputs: naming an input to change would mislead
        return (f"not enough memory to run the model: ONNX Runtime could not allocate a {int(allocation[1]) / 1e9:.1f} GB "
                "buffer on this machine")
    if capped:
        return f"the model cannot run: one of its tensors would pass ONNX Runtime's {int(capped[1]) / 1e9:.1f} GB limit ({first_line(exc)})"
    if BROADCAST_ATTENTION_MASK in str(exc):  # whatever the inputs: pinning their sizes would not help
        return ("the model cannot run in ONNX Runtime: its CPU Attention kernel does not broadcast a mask over the queries "
                "([.., 1, keys], which the ONNX spec allows); PyTorch's exporter writes such a padding mask at opset 23, "
                "so export at opset 18 (the dynamo exporter's default) instead")
    if isinstance(feeds, SyntheticFeeds) and not feeds.ran:
        return f"the model does not run on synthetic inputs: {feeds.fix()} (ONNX Runtime: {first_line(exc)})"
    return f"ONNX Runtime failed to run the model: {first_line(exc)}"


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


def _session_from_ir(model: ir.Model, options: ort.SessionOptions) -> ort.InferenceSession:
    if io.initializer_bytes(model) < io.EXTERNAL_DATA_THRESHOLD:
        data = io.to_proto(model).SerializeToString()
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory(prefix="onnxcompress-") as tmp:
        path = Path(tmp) / "model.onnx"
        io.save(model, path)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

