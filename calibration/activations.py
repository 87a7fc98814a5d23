"""Intermediate tensors of a model over calibration data, one batch at a time.

A copy of the model (``onnxcompress.io.clone``) gets the requested tensors as extra graph outputs and
ONNX Runtime runs it batch by batch, so at most one batch of activations is alive at a time — unlike
collecting every batch's outputs before estimating ranges, whose memory grows with the sample count.
Samples are fed in the model's own batch (``validation.model_batches``: a model declaring a batch of 1
gets one sample per run); when its batch is free, a reader batch is split into runs of as many samples
as keep the exposed tensors under ``ACTIVATION_BYTES`` (the first run, of one sample, measures them). Exposing every activation of a
224×224 MobileNet-style net and calibrating it with the readers' default batch of 32 peaked at 3.2 GB;
in runs under 64 MB it peaks at 0.27 GB at the same speed, and MiniLM's MatMul inputs take less
memory and time the same way (``docs/measured.md`` has the calibration figures). The
consumers (estimators, running sums) give the same result however a batch is split. Shared by
quantization (ranges, smoothing, GPTQ) and pruning (activation importance, reconstruction).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common

from onnxcompress import io, runtime
from onnxcompress.calibration.validation import model_batches
from onnxcompress.errors import UsageError, first_line

ACTIVATION_BYTES = 64 * 2**20


def stream_activations(
    model: ir.Model,
    reader,
    tensor_names: Sequence[str],
    *,
    optimization: str = "all",
    threads: int | None = None,
    max_bytes: int = ACTIVATION_BYTES,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{tensor name: array}`` for every feed of ``reader`` in the model's batch (each checked against
    ``model``), in runs of at most ``max_bytes`` of exposed tensors when the model's batch is free."""
    names = list(dict.fromkeys(tensor_names))
    session = runtime.session(expose_tensors(model, names), threads=threads, optimization=optimization)
    rows = 1  # when the batch is free, the first run measures one sample's activations
    for feed in model_batches(reader, model):
        start = 0
        while start < feed.samples:
            stop = feed.samples if feed.model_batch is not None else min(feed.samples, start + rows)
            values = _run(session, names, feed.arrays(start, stop))
            if feed.model_batch is None:
                rows = _rows_within(max_bytes, values, stop - start)
            start = stop
            yield dict(zip(names, values))


def first_batch_activations(model: ir.Model, reader, tensor_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named tensors over the reader's first batch only, as one run over that batch would give them: a fixed
    calibration sample. Runs are joined along each tensor's batch axis (axis 1 of a sequence-first
    ``[seq, batch, features]`` tensor), found as the axis whose length differs between runs, else the first."""
    runs = list(stream_activations(model, _FirstBatch(reader), tensor_names))
    return {name: _joined([run[name] for run in runs]) for name in dict.fromkeys(tensor_names)}


def _joined(runs: Sequence[np.ndarray]) -> np.ndarray:
    """``runs`` of one tensor concatenated along the axis that varies with the run's size (the first if none does)."""
    axis = next((k for k, sizes in enumerate(zip(*(run.shape for run in runs))) if len(set(sizes)) > 1), 0)
    return np.concatenate(runs, axis=axis)


class _FirstBatch:
    """``reader`` cut to its first batch."""

    def __init__(self, reader) -> None:
        self.input_names = reader.input_names
        self._reader = reader

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        return itertools.islice(self._reader.batches(), 1)


def _run(session, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return session.run(names, feeds)
    except Exception as exc:  # ORT raises several unrelated types for bad feeds
        raise UsageError(f"ONNX Runtime failed on calibration data: {first_line(exc)}") from None


def _rows_within(max_bytes: int, values: Sequence[np.ndarray], rows: int) -> int:
    """How many samples per run keep the exposed tensors under ``max_bytes`` (at least one)."""
    per_row = sum(v.nbytes for v in values) / max(rows, 1)
    return max(1, int(max_bytes // per_row)) if per_row else rows


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
        raise UsageError(f"cannot infer the types of the requested tensors: {first_line(exc)}") from None


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
