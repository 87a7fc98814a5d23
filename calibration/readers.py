"""Calibration data readers: batches of model inputs streamed from arrays, ``.npz`` files or a signature.

A reader is any object with ``input_names: list[str]`` and ``batches() -> Iterator[dict[str, np.ndarray]]``
that can be iterated again and holds at most one batch in memory. ``NpzReader`` streams each array
out of the zip member batch by batch instead of loading it whole (``np.load`` on an ``.npz`` reads
every array completely), so its memory does not grow with the number of samples.

A reader's batch size is how many samples it reads at a time, not what the model is fed:
``validation.model_batches`` feeds them in the model's own batch. Arrays without a sample axis (a
scalar, a state tensor given once; the rule is ``validation.feed_layout``) are yielded whole with every
batch; ``ArrayReader`` and ``NpzReader`` need the ``model`` to tell them apart, and without it hold
only scalars.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

import numpy as np
import onnx_ir as ir

from onnxcompress import io, runtime
from onnxcompress.calibration.images import ImageFolderReader
from onnxcompress.calibration.validation import feed_layout, validate_reader
from onnxcompress.errors import UsageError

Batch = dict[str, np.ndarray]


@runtime_checkable
class Reader(Protocol):
    """What every calibration reader provides: the input names and re-iterable batches."""

    input_names: list[str]

    def batches(self) -> Iterator[Batch]:
        """Yield one ``{input name: array}`` batch at a time; the first axis is the sample axis."""
        ...


class ArrayReader:
    """Batches sliced from in-memory arrays keyed by input name (first axis = samples, unless ``model``
    shows an array has none: it is then yielded whole with every batch)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int = 32, model: ir.Model | None = None) -> None:
        self.arrays = {name: np.asarray(array) for name, array in arrays.items()}
        self.input_names = list(self.arrays)
        self.batch_size = _check_batch_size(batch_size)
        self.layout = feed_layout(model, {n: a.shape for n, a in self.arrays.items()})

    def batches(self) -> Iterator[Batch]:
        """Yield consecutive slices of ``batch_size`` samples."""
        held = self.layout.held()
        for start, stop in _row_ranges(self.layout.samples, self.batch_size):
            yield {n: a if n in held else a[start:stop] for n, a in self.arrays.items()}


class NpzReader:
    """Batches streamed from an ``.npz`` file whose keys are the model's input names (arrays without a
    sample axis, told apart with ``model``, are read once and yielded whole with every batch)."""

    def __init__(self, path: str | os.PathLike, batch_size: int = 32, model: ir.Model | None = None) -> None:
        self.path = Path(path)
        self.batch_size = _check_batch_size(batch_size)
        headers = self._headers()
        self.input_names = list(headers)
        self.layout = feed_layout(model, {n: shape for n, (shape, _) in headers.items()})

    def batches(self) -> Iterator[Batch]:
        """Yield ``batch_size`` samples of every array, read from the archive as needed."""
        headers, held = self._headers(), self.layout.held()
        with zipfile.ZipFile(self.path) as archive:
            streams = {name: archive.open(name + ".npy") for name in headers}
            try:
                for stream in streams.values():
                    _read_header(stream)
                whole = {n: _read_array(streams[n], *headers[n]) for n in held}
                for start, stop in _row_ranges(self.layout.samples, self.batch_size):
                    rows = {n: _read_array(streams[n], (stop - start, *shape[1:]), dtype)
                            for n, (shape, dtype) in headers.items() if n not in held}
                    yield {n: whole[n] if n in held else rows[n] for n in headers}
            finally:
                for stream in streams.values():
                    stream.close()

    def _headers(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """``{name: (shape, dtype)}`` of every array, checked from the headers before any data is read (``io.array_headers``)."""
        headers = io.array_headers(self.path)
        fortran = [name for name, header in headers.items() if header.fortran_order]
        if fortran:
            raise UsageError(f"{self.path}: array {fortran[0]!r} is Fortran-ordered; save it in C order")
        return {name: (header.shape, header.dtype) for name, header in headers.items()}


class SyntheticReader:
    """Random batches built from the model's signature (for a first look when no data is at hand)."""

    def __init__(self, model: ir.Model, samples: int = 32, batch_size: int = 8, seed: int = 0) -> None:
        self.model = model
        self.samples = samples
        self.batch_size = _check_batch_size(batch_size)
        self.seed = seed
        self.input_names = [v.name for v in model.graph.inputs if v.name not in model.graph.initializers]

    def batches(self) -> Iterator[Batch]:
        """Yield ``samples`` random samples, ``batch_size`` at a time, the same on every pass."""
        for index, start in enumerate(range(0, self.samples, self.batch_size)):
            count = min(self.batch_size, self.samples - start)
            yield runtime.synthetic_inputs(self.model, batch=count, seed=self.seed + index)


def open_reader(source: str | os.PathLike, model: ir.Model, batch_size: int = 32) -> Reader:
    """The reader for ``source`` (an ``.npz`` file or a folder of images), checked against ``model``."""
    source = io.check_data_path(source, "file or folder", prefix="calibration data ", folder=True)
    if source.is_dir():
        reader: Reader = ImageFolderReader.for_model(source, model, batch_size=batch_size)
    elif source.suffix == ".npz":
        reader = NpzReader(source, batch_size=batch_size, model=model)
    else:
        raise UsageError(f"calibration data {source}: expected an .npz file or a folder of images")
    validate_reader(reader, model)
    return reader


def _check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    return batch_size


def _row_ranges(samples: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each batch of ``batch_size`` samples out of ``samples``."""
    for start in range(0, samples, batch_size):
        yield start, min(start + batch_size, samples)


def _read_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read past a ``.npy`` header, returning (shape, fortran_order, dtype)."""
    major, _ = np.lib.format.read_magic(stream)
    if major == 1:
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


def _read_array(stream: IO[bytes], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The next array of ``shape`` from ``stream`` (the rows that follow when ``shape`` is a slice of the member's)."""
    data = stream.read(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
