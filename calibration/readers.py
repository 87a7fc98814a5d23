"""Calibration data readers: batches of model inputs from arrays, feed dicts, ``.npz`` files or a signature.

A reader is any object with ``input_names: list[str]`` and ``batches() -> Iterator[dict[str, np.ndarray]]``
that can be iterated again and holds at most one batch in memory (beyond data the caller already holds
in memory: ``ArrayReader``, ``FeedsReader``). ``as_reader`` turns whatever form the data comes in into
one, ``open_reader`` a path. ``NpzReader`` streams each array out of the zip member batch by batch
instead of loading it whole (``np.load`` on an ``.npz`` reads every array completely), so its memory
does not grow with the number of samples.

A reader's batch size is how many samples it reads at a time, not what the model is fed:
``validation.model_batches`` feeds them in the model's own batch. Arrays without a sample axis (a
scalar, a state tensor given once; the rule is ``validation.feed_layout``) are yielded whole with every
batch; ``ArrayReader`` and ``NpzReader`` need the ``model`` to tell them apart, and without it hold
only scalars.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

import numpy as np
import onnx_ir as ir

from onnxcompress import io, runtime
from onnxcompress.calibration.images import ImageFolderReader
from onnxcompress.calibration.text import TextReader
from onnxcompress.calibration.validation import check_names, feed_layout, validate_reader
from onnxcompress.errors import UsageError

Batch = dict[str, np.ndarray]
ACCEPTED = ("a path (.npz file, image folder), a dict of arrays by input name, an iterable of feed dicts, "
            "an ONNX Runtime CalibrationDataReader or a reader (input_names, batches())")


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


class FeedsReader:
    """Feed dicts held in memory, one batch each (what an iterable of feeds or an ONNX Runtime
    ``CalibrationDataReader`` gave: such sources can be read only once, the passes read a reader often)."""

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]) -> None:
        self.feeds = [_feed_dict(feed, index) for index, feed in enumerate(feeds)]
        if not self.feeds:
            raise UsageError("calibration data is empty: it gave no feed dicts")
        self.input_names = list(self.feeds[0])
        for index, feed in enumerate(self.feeds):
            if set(feed) != set(self.input_names):
                raise UsageError(f"calibration feed {index} has inputs {sorted(feed)} but feed 0 has {sorted(self.input_names)}")

    def batches(self) -> Iterator[Batch]:
        """Yield the feeds in the order they were given."""
        yield from self.feeds


def open_reader(
    source: str | os.PathLike, model: ir.Model, batch_size: int = 32, *, tokenizer: str | os.PathLike | None = None, **image_options,
) -> Reader:
    """The reader for ``source``, checked against ``model``: an ``.npz`` file (keys = input names, first axis =
    samples), a folder of images (``image_options``: ``size``, ``layout``, ``mean``, ``std`` of
    ``ImageFolderReader.for_model``; None means the default) or, with ``tokenizer`` (a folder holding
    ``tokenizer.json``), a text file of one sentence per line."""
    source = io.check_data_path(source, "file or folder", prefix="calibration data ", folder=True)
    given = {name: value for name, value in image_options.items() if value is not None}
    if given and not source.is_dir():
        raise UsageError(f"image options ({', '.join(given)}) apply to a folder of images, and calibration data {source} is a file")
    if tokenizer is not None and (source.is_dir() or source.suffix == ".npz"):
        raise UsageError(f"a tokenizer reads a text file of sentences, and calibration data {source} is {'a folder' if source.is_dir() else 'an .npz'}")
    if source.is_dir():
        reader: Reader = ImageFolderReader.for_model(source, model, batch_size=batch_size, **given)
    elif source.suffix == ".npz":
        reader = NpzReader(source, batch_size=batch_size, model=model)
    elif tokenizer is not None:
        reader = TextReader.for_model(source, tokenizer, model, batch_size=batch_size)
    elif source.suffix == ".txt":
        raise UsageError(f"calibration data {source}: a text file needs the folder of its tokenizer.json (--tokenizer DIR)")
    else:
        raise UsageError(f"calibration data {source}: expected an .npz file, a folder of images or a .txt file with a tokenizer")
    validate_reader(reader, model)
    return reader


def as_reader(data: object, model: ir.Model, *, batch_size: int = 32) -> Reader:
    """The reader the passes use for ``data`` in any form a user may have it, checked against ``model``.

    ``data`` is a reader (returned as it is once its input names match; its feeds are checked as they
    stream), a path (``open_reader``), a dict of arrays keyed by input name (first axis = samples), an
    ONNX Runtime ``CalibrationDataReader`` (anything with ``get_next()``: read to the end once, rewound
    before and after when it has ``rewind()``) or any other iterable of feed dicts (one batch each).
    """
    if isinstance(data, Reader):
        check_names(data.input_names, model)
        return data
    if isinstance(data, (str, os.PathLike)):
        return open_reader(data, model, batch_size=batch_size)
    if callable(getattr(data, "get_next", None)):
        reader: Reader = FeedsReader(_drained(data))
    elif isinstance(data, Mapping):
        reader = ArrayReader(data, batch_size=batch_size, model=model)
    elif isinstance(data, Iterable) and not isinstance(data, (bytes, np.ndarray)):
        reader = FeedsReader(data)
    else:
        raise UsageError(f"calibration data must be {ACCEPTED}; got {type(data).__name__}")
    validate_reader(reader, model)
    return reader


def _drained(source) -> list:
    """Every feed of an ONNX Runtime-style reader (``get_next()`` until None), rewound first and after when it can be."""
    rewind = getattr(source, "rewind", None)
    if callable(rewind):
        rewind()
    feeds = list(iter(source.get_next, None))
    if callable(rewind):
        rewind()
    return feeds


def _feed_dict(feed: object, index: int) -> Batch:
    """One feed of an iterable as ``{input name: array}``, or a one-line ``UsageError``."""
    if not isinstance(feed, Mapping):
        raise UsageError(f"calibration feed {index} is a {type(feed).__name__}, not a dict of arrays keyed by input name")
    return {str(name): np.asarray(value) for name, value in feed.items()}


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
