"""Intermediate tensors of a model over calibration data, one batch at a time.

A copy of the model (``onnxcompress.io.clone``) gets the requested tensors as extra graph outputs and
ONNX Runtime runs it batch by batch, so at most one batch of activations is alive at a time — unlike
collecting every batch's outputs before estimating ranges, whose memory grows with the sample count.
Shared by static quantization (ranges) and pruning (activation importance).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common

from onnxcompress import io, runtime
from onnxcompress.calibration.validation import checked_batches
from onnxcompress.errors import UsageError


def stream_activations(
    model: ir.Model,
    reader,
    tensor_names: Sequence[str],
    *,
    optimization: str = "all",
    threads: int = runtime.DEFAULT_THREADS,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{tensor name: array}`` for every batch of ``reader`` (each batch checked against ``model``)."""
    names = list(dict.fromkeys(tensor_names))
    session = runtime.session(expose_tensors(model, names), threads=threads, optimization=optimization)
    for batch in checked_batches(reader, model):
        try:
            values = session.run(names, batch)
        except Exception as exc:  # ORT raises several unrelated types for bad feeds
            raise UsageError(f"ONNX Runtime failed on calibration data: {str(exc).strip().splitlines()[0]}") from None
        yield dict(zip(names, values))


def expose_tensors(model: ir.Model, tensor_names: Sequence[str]) -> ir.Model:
    """A copy of ``model`` whose graph also outputs the named tensors (the original is untouched)."""
    copy = _with_types(io.clone(model))
    graph = copy.graph
    values = _values_by_name(graph)
    unknown = [n for n in tensor_names if n not in values]
    if unknown:
        raise UsageError(f"tensor(s) {unknown[:5]} not found in the model's main graph")
    present = {v.name for v in graph.outputs}
    for name in tensor_names:
        if name not in present:
            graph.outputs.append(values[name])
            present.add(name)
    return copy


def float_tensor_names(model: ir.Model) -> list[str]:
    """Names of the floating-point activations of the main graph (node outputs), in graph order."""
    typed = _with_types(io.clone(model)) if _untyped(model) else model
    return [
        value.name
        for node in typed.graph
        for value in node.outputs
        if value.name and value.dtype is not None and value.dtype.is_floating_point()
    ]


def _untyped(model: ir.Model) -> bool:
    return any(value.type is None for node in model.graph for value in node.outputs if value.name)


def _with_types(model: ir.Model) -> ir.Model:
    """``model`` with every intermediate value typed (ONNX requires typed graph outputs), in place."""
    if not _untyped(model):
        return model
    try:
        return ir.passes.common.ShapeInferencePass(strict_mode=False)(model).model
    except Exception as exc:  # onnx raises InferenceError and others for graphs it cannot type
        raise UsageError(f"cannot infer the types of the requested tensors: {str(exc).strip().splitlines()[0]}") from None


def _values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    values = {v.name: v for v in graph.inputs}
    for node in graph:
        values.update((v.name, v) for v in node.outputs if v.name)
    return values


def channel_peaks(model: ir.Model, reader, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Largest |value| of each last-axis channel of the named tensors over the calibration data (streamed)."""
    peaks: dict[str, np.ndarray] = {}
    for batch in stream_activations(model, reader, names):
        for name, array in batch.items():
            peak = np.abs(array.reshape(-1, array.shape[-1])).max(axis=0)
            peaks[name] = peak if name not in peaks else np.maximum(peaks[name], peak)
    if not np.all([np.isfinite(p).all() for p in peaks.values()]):
        raise UsageError("calibration data gives non-finite activations; cannot find channel ranges")
    return peaks
