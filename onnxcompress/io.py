"""File I/O: validated model loading, bounded data reads, and the one writer for every output.

Loading checks what ``onnx.load`` lets through (empty or truncated files, random bytes that parse
as an empty ModelProto, opsets newer than the installed onnx, external data whose location escapes
the model's folder by ``..``, an absolute path or a symlink, unknown external-data keys, missing,
short or hard-linked data files) before any tensor is read, so every command gets the same
one-line error and no file outside the model's folder is opened (onnx's CVE-2022-25882 /
2024-27318 / 2025-51480 / 2026-27489 class).

Data paths (calibration ``.npz`` or folder, ``--inputs``, golden files, recipes, ranges) go through
``check_data_path``: only a regular file (or a folder where one is allowed) is opened, so a FIFO, a
device or a symlink to ``/dev/zero`` is a one-line error instead of a hang or an endless read; text
files are read up to ``TEXT_LIMIT``. An ``.npz`` is judged from its zip directory and the ``.npy``
header of each member before anything is inflated (``array_headers``): no object arrays, each
member's declared size must match its size in the zip directory, and the total must fit
``array_budget()`` — a zip bomb is refused after reading a few kilobytes.

Every file the tool writes goes through ``write_files`` (``save``, ``write_bytes``, ``save_arrays``):
it is staged in a temporary folder next to the target, flushed to disk and renamed into place, so an
interrupted write (an exception, Ctrl-C or SIGTERM) leaves the old file and no partial or staging
file. It refuses the input models and their external-data files (same path, other spelling,
symlink or hard link) and any existing target that is not a plain regular file: a symlink, a file
with other hard links, a folder, a device, a FIFO or a socket. Models whose tensors exceed
protobuf's 2 GB limit are saved with their tensors in ``OUT.onnx.data``, a bare name next to the
model (the only external-data location this module writes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io as io_module
import math
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass
from google.protobuf.message import DecodeError

from onnxcompress import sparse_initializers, walk
from onnxcompress.defaults import MEMORY_BUDGET_ENV
from onnxcompress.errors import UsageError, first_line

SOURCE_KEY = "onnxcompress.source_path"
EXTERNAL_FILES_KEY = "onnxcompress.external_files"
SPARSE_KEY = "onnxcompress.sparse_initializers"  # names of the initializers the file stored sparse
PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
MIN_OPSET = 7
EXTERNAL_DATA_KEYS = frozenset({"location", "offset", "length", "checksum"})
TEXT_LIMIT = 16_000_000  # recipes and ranges files are a few kilobytes
MAX_ARRAY_BYTES = 4_000_000_000
MEMORY_SHARE = 0.25  # of the memory available when an .npz is opened
SIZE_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}  # decimal, as sizes are printed
NPY_SUFFIX = ".npy"
FILE_KINDS = {
    stat.S_IFLNK: "symbolic link", stat.S_IFDIR: "folder", stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket",
}


NESTED_TOO_DEEP = ("subgraphs nested deeper than protobuf's parse limit (depth 100: about 31 levels of If, Loop or "
                   "Scan); ONNX and ONNX Runtime cannot read this model either")


def load(path: str | os.PathLike) -> ir.Model:
    """Load an ONNX model, external data included, or raise a one-line ``UsageError``."""
    return _load(path)[0]


def load_with_snapshot(path: str | os.PathLike) -> tuple[ir.Model, Snapshot]:
    """``load``, and the model's ``Snapshot`` made from the proto the file was read into rather than by serializing
    the model again (half the cost of checking a loaded model, at 25 us a node). A model with external data is
    serialized as ``Snapshot`` does, its tensors read in."""
    model, proto = _load(path)
    return model, Snapshot(model, proto)


def _load(path: str | os.PathLike) -> tuple[ir.Model, onnx.ModelProto | None]:
    """The model and the proto it was read from, None when it has external data (the proto does not hold it)."""
    path = Path(path)
    proto = _read_proto(path)
    _check_model_proto(proto, path)
    external = _check_external_data(proto, path.parent)
    sparse = sparse_initializers.densify(proto, path.parent, array_budget())
    _check_no_maps(proto.graph, path)
    try:
        model = deserialize(proto)
    except Exception as exc:  # onnx_ir raises several types for malformed graphs
        raise UsageError(f"{path}: malformed ONNX graph ({first_line(exc)})") from None
    if external:  # what onnx_ir reads those tensors from
        ir.external_data.set_base_dir(model.graph, str(path.parent.resolve()))
    model.meta[SOURCE_KEY] = str(path.resolve())
    model.meta[EXTERNAL_FILES_KEY] = tuple(str(p) for p in _external_files(model))
    model.meta[SPARSE_KEY] = tuple(sparse)
    return model, None if external else proto


def save(model: ir.Model, path: str | os.PathLike, *, inputs: Iterable[ir.Model] = (), snapshot: Snapshot | None = None) -> Path:
    """Write ``model`` to ``path`` atomically; never over the files it or ``inputs`` were loaded from. ``snapshot``
    is ``model`` already serialized (``Snapshot``), when the caller has it: its proto is written."""
    path = Path(path)
    external = initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    targets = [path, external_data_path(path)] if external else [path]
    with write_files(targets, [model, *inputs]) as staged:
        if external:
            ir.save(model, staged[0], external_data=staged[1].name, size_threshold_bytes=1024)
        else:
            proto = to_proto(model) if snapshot is None or snapshot.proto is None else _copied(snapshot.proto)
            sparse_initializers.sparsify(proto, model.meta.get(SPARSE_KEY, ()))
            if proto.ByteSize() > PROTOBUF_LIMIT:
                raise UsageError(f"cannot write {path}: model exceeds 2 GB")
            staged[0].write_bytes(proto.SerializeToString())
    return path


def _copied(proto: onnx.ModelProto) -> onnx.ModelProto:
    """An independent copy of ``proto`` (C++ copy: writing sparse initializers back must not change a snapshot)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def external_data_path(path: str | os.PathLike) -> Path:
    """Where ``save`` puts the tensors of a model too large for one protobuf: next to it."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def write_bytes(path: str | os.PathLike, data: bytes, *, inputs: Iterable[ir.Model] = ()) -> Path:
    """Write ``data`` to ``path`` (reports, JSON, JUnit, charts) through ``write_files``: all of it or nothing."""
    path = Path(path)
    with write_files([path], inputs) as staged:
        staged[0].write_bytes(data)
    return path


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, inputs: Iterable[ir.Model] = ()) -> Path:
    """Write ``arrays`` as an .npz file through ``write_files``."""
    buffer = io_module.BytesIO()
    np.savez(buffer, **arrays)
    return write_bytes(path, buffer.getvalue(), inputs=inputs)


@contextlib.contextmanager
def write_files(paths: Sequence[str | os.PathLike], inputs: Iterable[ir.Model] = ()) -> Iterator[list[Path]]:
    """The one way files are written: ``with write_files([out]) as [staged]: <write staged>``.

    Yields where to write each target (one folder for all) inside a staging folder next to them.
    After the body every staged file is flushed to disk and renamed over its target, which is
    checked by ``check_output_path`` against the files of ``inputs`` both before and just before
    the rename. If the body raises, or Ctrl-C or SIGTERM arrives, the staging folder is removed
    and no target changes; a SIGTERM is then delivered as it would have been.
    """
    targets = [Path(p) for p in paths]
    protected = _protected_files(inputs)
    for target in targets:
        _check_target(target, protected)
    with _SigtermGuard(targets[0]) as guard:
        folder = None
        try:
            folder = _staging_folder(targets[0])
            staged = [folder / target.name for target in targets]
            yield staged
            for target, file in zip(targets, staged):
                _check_target(target, protected)
                _fsync(file)
            for target, file in zip(targets, staged):
                os.replace(file, target)
            _fsync(targets[0].parent)
        except OSError as exc:
            raise UsageError(f"cannot write {targets[0]}: {exc.strerror or exc}") from None
        finally:
            guard.disarm()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def check_output_path(path: str | os.PathLike, inputs: Iterable[ir.Model] = ()) -> None:
    """Raise a one-line ``UsageError`` unless ``write_files`` may write ``path`` (called early by commands).

    Refused: the files ``inputs`` were loaded from (by any spelling, symlink or hard link), a
    missing or unwritable folder, and an existing path that is not a regular file with one link.
    """
    _check_target(Path(path), _protected_files(inputs))


def _protected_files(models: Iterable[ir.Model]) -> dict[Path, str]:
    """The files ``models`` were loaded from, each with what it is (for the refusal message)."""
    protected: dict[Path, str] = {}
    for model in models:
        source = source_path(model)
        if source is not None:
            protected[source] = "input model"
        recorded = [Path(p) for p in model.meta.get(EXTERNAL_FILES_KEY, ())]
        for file in (*recorded, *_external_files(model)):
            protected.setdefault(file, "external data of the input model")
    return protected


def check_data_path(path: str | os.PathLike, noun: str = "file", *, prefix: str = "", folder: bool = False) -> Path:
    """``path`` if it is a regular file (or, with ``folder``, a folder), else a one-line ``UsageError``.

    Symlinks are followed to what they name, but nothing is opened: a FIFO (which would block),
    a device (``/dev/zero`` never ends) or a socket is refused from its ``stat``.
    """
    path = Path(path)
    label = f"{prefix}{path}"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"{label}: no such {noun}") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode) or (folder and stat.S_ISDIR(mode)):
        return path
    if stat.S_ISDIR(mode):
        raise UsageError(f"{label}: is a folder, not a {noun}")
    raise UsageError(f"{label}: is a {_kind(mode)}, not a regular file")


def open_data(path: str | os.PathLike, noun: str = "file", *, prefix: str = "") -> BinaryIO:
    """``path`` opened for binary reading after ``check_data_path``, re-checked on the open file.

    The open itself cannot block (``O_NONBLOCK``), so a FIFO swapped in after the check is still refused.
    """
    path = check_data_path(path, noun, prefix=prefix)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise UsageError(f"{prefix}{path}: cannot read ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UsageError(f"{prefix}{path}: is a {_kind(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_text(path: str | os.PathLike, noun: str = "file", *, prefix: str = "", limit: int = TEXT_LIMIT) -> str:
    """The UTF-8 text of a small data file (recipe, ranges), at most ``limit`` bytes, or a one-line ``UsageError``."""
    with open_data(path, noun, prefix=prefix) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{prefix}{path}: larger than {_size(limit)}, too large for a {noun}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{prefix}{path}: not UTF-8 text") from None


@dataclasses.dataclass(frozen=True)
class ArrayHeader:
    """What one ``.npy`` member of an ``.npz`` declares, read without inflating its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        """Bytes of data the header promises."""
        return math.prod(self.shape) * self.dtype.itemsize


def array_budget() -> int:
    """Most bytes of input arrays a command may hold (an ``.npz``'s declared total, synthetic inputs, a
    sparse tensor made dense): ``ONNXCOMPRESS_MEMORY_BUDGET`` when set, else ``MEMORY_SHARE`` of the
    available memory, at most ``MAX_ARRAY_BYTES``."""
    chosen = os.environ.get(MEMORY_BUDGET_ENV)
    if chosen:
        return parse_size(chosen, MEMORY_BUDGET_ENV)
    return min(MAX_ARRAY_BYTES, int(MEMORY_SHARE * _available_memory()))


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from ``"8GB"``, ``"512MB"``, ``"1.5 GB"`` or a plain number of bytes; a one-line ``UsageError`` else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?[bB]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise UsageError(f"{what} {text!r} is not a size: expected a positive number of bytes or e.g. 512MB, 8GB")
    return int(float(match[1]) * SIZE_UNITS[match[2].upper().removesuffix("B")])


def array_headers(path: str | os.PathLike) -> dict[str, ArrayHeader]:
    """The arrays of an ``.npz`` file by name, checked from their headers before anything is inflated.

    Every member must be a ``.npy`` array without Python objects whose header agrees with its size
    in the zip directory, and all together must fit ``array_budget()``; else a one-line ``UsageError``.
    """
    with _npz(path) as (_, headers):
        return headers


def load_arrays(path: str | os.PathLike, model: ir.Model | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name (never unpickling objects), or a one-line ``UsageError``.

    Headers are checked first (``array_headers``) and, with ``model``, the names and ranks against
    its inputs (``check_input_arrays``), so a wrong or hostile file is refused before it is inflated.
    """
    with _npz(path) as (archive, headers):
        if model is not None:
            check_input_arrays({name: h.shape for name, h in headers.items()}, model, path)
        return {name: _read_member(archive, name) for name in headers}


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """A single ``.npy`` array (an image in a calibration folder), checked like an ``.npz`` member before it is read."""
    path = Path(path)
    with open_data(path) as stream:
        try:
            header, header_bytes = _npy_header(stream, f"{path}: the array")
            _check_stored(f"{path}: the array", header.nbytes, os.fstat(stream.fileno()).st_size - header_bytes, "the file")
            _check_budget(f"{path}: the array", header.nbytes, array_budget())
            stream.seek(0)
            return np.lib.format.read_array(stream, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise UsageError(f"{path}: not a readable .npy array") from None


def check_input_names(names: Iterable[str], model: ir.Model) -> None:
    """Raise a ``UsageError`` unless ``names`` are exactly the inputs ``model`` needs (initializer-backed ones optional)."""
    names = set(names)
    needed = [v.name for v in model.graph.inputs if v.name not in model.graph.initializers]
    missing = [n for n in needed if n not in names]
    unknown = sorted(names - {v.name for v in model.graph.inputs})
    if missing:
        raise UsageError(f"inputs lack {missing}; the model takes {needed}")
    if unknown:
        raise UsageError(f"inputs {unknown} are not inputs of the model; it takes {needed}")


def check_input_arrays(shapes: Mapping[str, tuple[int, ...]], model: ir.Model, path: str | os.PathLike) -> None:
    """Raise a ``UsageError`` unless arrays of ``shapes`` (from ``path``) name the model's inputs with their ranks."""
    check_input_names(shapes, model)
    for value in model.graph.inputs:
        shape = shapes.get(value.name)
        if shape is not None and value.shape is not None and len(shape) != len(value.shape):
            raise UsageError(
                f"{path}: input {value.name!r} has shape {tuple(shape)} but the model expects rank {len(value.shape)}"
            )


def initializer_bytes(model: ir.Model) -> int:
    """Total bytes of the model's initializers (what decides the 2 GB protobuf limit)."""
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def source_path(model: ir.Model) -> Path | None:
    """The file ``model`` was loaded from, if it came from ``load``."""
    source = model.meta.get(SOURCE_KEY)
    return Path(source) if source else None


def default_opset(model: ir.Model) -> int:
    """The model's version of the default ONNX domain (1 when it imports none)."""
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))


def upgraded_opset(proto: onnx.ModelProto, version: int, purpose: str) -> onnx.ModelProto:
    """``proto`` converted by onnx's version converter to at least opset ``version`` (unchanged when there).

    A bare opset number change would alter what old ops mean (a Softmax below opset 13 normalises
    a flattened axis); a conversion the converter cannot do is a one-line ``UsageError`` naming
    ``purpose``, so no half-converted model is ever written.
    """
    current = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    if current >= version:
        return proto
    try:
        converted = onnx.version_converter.convert_version(proto, version)
        del converted.graph.value_info[:]  # the converter keeps types its adapters made stale (Dropout's mask turns bool)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises bare RuntimeErrors for unsupported adapters
        unknown = sorted({n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})
        reason = (f"the ONNX domain holds {', '.join(unknown[:3])}, which ONNX Runtime registers there but ONNX does not "
                  "define, and onnx's version converter cannot convert" if unknown else first_line(exc))
        raise UsageError(f"{purpose} needs opset >= {version}; converting from opset {current} failed: {reason}") from None
    return converted


def raise_opset(model: ir.Model, version: int, purpose: str) -> bool:
    """Convert ``model`` in place to opset ``version`` when it is below (``upgraded_opset``); True when it was."""
    if default_opset(model) >= version:
        return False
    replace_contents(model, upgraded_opset(to_proto(model), version, purpose))
    return True


def replace_contents(model: ir.Model, proto: onnx.ModelProto) -> None:
    """Make ``model`` (in place) hold the graph, functions and versions of ``proto`` (sorted, unused nodes dropped); keep its
    metadata and the shapes it declares for its inputs and outputs (ORT's quantizers merge symbolic dims and renamed an
    ORT GenAI model's ``total_sequence_length`` outputs ``past_sequence_length``)."""
    declared = {v.name: v.shape for v in (*model.graph.inputs, *model.graph.outputs) if v.shape is not None}
    new = deserialize(proto)
    for value in (*new.graph.inputs, *new.graph.outputs):
        shape = declared.get(value.name)
        if shape is not None and value.shape is not None and len(shape) == len(value.shape):
            value.shape = shape.copy()
    model.graph = new.graph
    model.ir_version = new.ir_version
    model.functions.clear()
    model.functions.update(new.functions)
    TopologicalSortPass()(model)
    RemoveUnusedNodesPass()(model)


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """Serialize to a ModelProto with every tensor inline (reads external data into it).

    onnx_ir keeps external references when serializing; a proto that still points at files
    relative to the source folder would break once written elsewhere or handed to ORT as bytes.
    """
    proto = ir.serde.serialize_model(model)
    if not _reads_files(model):
        return proto  # the usual case, told from the model without walking the proto's every tensor
    external = {
        value.name: value.const_value
        for graph in walk.graphs(model.graph)
        for value in graph.initializers.values()
        if isinstance(value.const_value, ir.ExternalTensor)
    }
    for tensor in _external_tensors(proto):
        if tensor.name not in external:
            raise UsageError(f"tensor {tensor.name!r}: external data outside initializers is not supported")
        tensor.raw_data = external[tensor.name].tobytes()
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return proto


def _reads_files(model: ir.Model) -> bool:
    """Whether any tensor of ``model`` (an initializer or an attribute's, in any graph or function) is still read from a file."""
    for graph in [*walk.graphs(model.graph), *(g for function in model.functions.values() for g in walk.graphs(function))]:
        initializers = graph.initializers.values() if isinstance(graph, ir.Graph) else ()
        if any(isinstance(value.const_value, ir.ExternalTensor) for value in initializers):
            return True
        for node in graph:
            for attribute in node.attributes.values() if node.attributes else ():
                tensors = [attribute.value] if attribute.type == ir.AttributeType.TENSOR else (
                    attribute.value if attribute.type == ir.AttributeType.TENSORS else [])
                if any(isinstance(tensor, ir.ExternalTensor) for tensor in tensors):
                    return True
    return False


def clone(model: ir.Model) -> ir.Model:
    """An independent copy of ``model`` (passes work in place; the pipeline keeps the original).

    Above the 2 GB protobuf limit the copy shares tensor data with ``model`` (a proto round trip
    is impossible there); passes replace tensors rather than write into them, so that is safe.
    """
    return Snapshot(model).copy()


class Snapshot:
    """``model`` as it is at one moment, serialized once (``to_proto``): the proto and its bytes that the checks,
    ONNX Runtime sessions and stats of that moment all read, and independent copies made from it only when
    asked (``copy``). Serializing costs about 25 us a node; a pipeline step used to do it eight times.

    Above the 2 GB protobuf limit there is no proto (``proto`` and ``data`` are None): the model is cloned at
    once, its tensors shared (see ``clone``), and copies and sessions come from that clone.
    """

    def __init__(self, model: ir.Model, proto: onnx.ModelProto | None = None) -> None:
        """``proto``: ``model`` already serialized (what it was deserialized from, unchanged since), kept as it is."""
        self._meta = {key: model.meta[key] for key in (SOURCE_KEY, EXTERNAL_FILES_KEY, SPARSE_KEY) if key in model.meta}
        large = proto is None and initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
        if proto is None and not large:
            proto = to_proto(model)
        self.proto: onnx.ModelProto | None = proto
        self._clone = model.clone() if large else None
        self._data: bytes | None = None

    @property
    def data(self) -> bytes | None:
        """The proto's bytes (deterministic, made once), what ONNX Runtime loads; None above the protobuf limit."""
        if self._data is None and self.proto is not None:
            self._data = self.proto.SerializeToString(deterministic=True)
        return self._data

    def same_as(self, other: Snapshot) -> bool:
        """Whether both hold the same model byte for byte (never said above the protobuf limit)."""
        return self.data is not None and self.data == other.data

    def copy(self) -> ir.Model:
        """An independent model of this moment, with the source and external-file records ``load`` left on it."""
        copy = self._clone.clone() if self.proto is None else deserialize(self.proto)
        copy.meta.update(self._meta)
        return copy


def deserialize(proto: onnx.ModelProto) -> ir.Model:
    """``ir.serde.deserialize_model`` with Python's cyclic garbage collector paused: building a graph's objects
    (millions for 200,000 nodes) made it sweep the whole growing heap again and again, a fifth of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ir.serde.deserialize_model(proto)
    finally:
        if enabled:
            gc.enable()


def _read_proto(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, not an ONNX model")
    size = path.stat().st_size
    if size == 0:
        raise UsageError(f"{path}: empty file, not an ONNX model")
    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        if "MaxDepth" in str(exc):
            raise UsageError(f"{path}: {NESTED_TOO_DEEP}") from None
        raise UsageError(f"{path}: not an ONNX model or truncated ({type(exc).__name__})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_model_proto(proto: onnx.ModelProto, path: Path) -> None:
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.graph.output:
        raise UsageError(f"{path}: not an ONNX model (no graph or no outputs)")
    newest = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx"):
            if opset.version > newest:
                raise UsageError(
                    f"{path}: opset {opset.version} is newer than the installed onnx supports ({newest})"
                )
            if opset.version < MIN_OPSET:
                raise UsageError(f"{path}: opset {opset.version} is older than supported ({MIN_OPSET})")


def _check_no_maps(graph: onnx.GraphProto, path: Path) -> None:
    """Refuse a graph whose inputs, outputs or annotated values hold maps (a ``ZipMap``'s sequence of maps, as
    skl2onnx writes a classifier's probabilities): onnx-ir, the graph library every pass works on, has no map type."""
    names = [v.name for v in (*graph.input, *graph.output, *graph.value_info) if _holds_map(v.type)]
    if names:
        raise UsageError(f"{path}: {', '.join(map(repr, names))} {'holds' if len(names) == 1 else 'hold'} maps (a ZipMap's output: skl2onnx writes one unless converted "
                         "with options {'zipmap': False}), which onnx-ir, the graph library onnxcompress works on, cannot represent")


def _holds_map(value_type: onnx.TypeProto) -> bool:
    """Whether ``value_type`` is a map, or a sequence or optional of one."""
    kind = value_type.WhichOneof("value")
    if kind == "map_type":
        return True
    if kind in ("sequence_type", "optional_type"):
        return _holds_map(getattr(value_type, kind).elem_type)
    return False


def _check_external_data(proto: onnx.ModelProto, folder: Path) -> bool:
    """Every external-data location must be a file inside the model's folder, large enough, with one name; True
    when ``proto`` has any."""
    root = folder.resolve()
    external = _external_tensors(proto)
    for tensor in external:
        info = {entry.key: entry.value for entry in tensor.external_data}
        unknown = sorted(set(info) - EXTERNAL_DATA_KEYS)
        if unknown:
            raise UsageError(f"external data of tensor {tensor.name!r} has unknown keys {unknown}")
        location = info.get("location", "")
        target = _resolve_inside(root, location, tensor.name)
        offset = _non_negative(info.get("offset") or "0", "offset", tensor.name)
        length = _non_negative(info.get("length") or "0", "length", tensor.name)
        found = target.stat()
        if found.st_size < offset + length:
            raise UsageError(
                f"external data file {location!r} for tensor {tensor.name!r} is truncated"
            )
        if found.st_nlink > 1:  # onnx_ir refuses to read it: a hard link can bring in a file from anywhere
            raise UsageError(
                f"external data file {location!r} for tensor {tensor.name!r} is one of {found.st_nlink} hard links to the same file"
            )
    return bool(external)


def _resolve_inside(root: Path, location: str, tensor_name: str) -> Path:
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")):
        raise UsageError(f"external data location {location!r} of tensor {tensor_name!r} is not a relative path")
    if "\0" in location:
        raise UsageError(f"external data location {location!r} of tensor {tensor_name!r} holds a NUL character")
    target = (root / location).resolve()
    if root not in target.parents:
        raise UsageError(f"external data location {location!r} of tensor {tensor_name!r} escapes the model's folder")
    if not target.is_file():
        raise UsageError(f"external data file {location!r} for tensor {tensor_name!r} is missing")
    return target


def _non_negative(text: str, key: str, tensor_name: str) -> int:
    if not text.isdigit():
        raise UsageError(f"external data {key} {text!r} of tensor {tensor_name!r} is not a non-negative integer")
    return int(text)


def _external_files(model: ir.Model) -> list[Path]:
    """Files the model's tensors are still read from (writing over them would corrupt the input)."""
    return sorted({
        Path(value.const_value.path)
        for graph in walk.graphs(model.graph)
        for value in graph.initializers.values()
        if isinstance(value.const_value, ir.ExternalTensor)
    })



def _external_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The tensors of ``proto`` whose data lives in a file."""
    return [tensor for tensor in _tensors(proto) if tensor.data_location == onnx.TensorProto.EXTERNAL]


def _tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor ``proto`` holds: initializers, sparse initializers' values and indices, and attributes' tensors,
    in every graph, subgraph and function, in one walk that reads attributes only where a node has some (onnx's
    walk and a second one for sparse initializers took 1.1 s on a 200,000-node chain, this 0.2 s)."""
    pending: list[onnx.GraphProto | onnx.FunctionProto] = [proto.graph, *proto.functions]
    while pending:
        graph = pending.pop()
        if isinstance(graph, onnx.GraphProto):
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
        for node in graph.node:
            for attribute in node.attribute if node.attribute else ():
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("g"):
                    pending.append(attribute.g)
                pending.extend(attribute.graphs)




def _check_target(path: Path, protected: Mapping[Path, str]) -> None:
    """``check_output_path`` with the protected files already gathered."""
    for other, what in protected.items():
        if _same_file(path, other):
            raise UsageError(f"refusing to overwrite the {what} {other}; choose another output path")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {folder} is not writable")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"cannot write {path}: it is a folder")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"cannot write {path}: it is a {_kind(info.st_mode)}, not a regular file")
    if info.st_nlink > 1:
        raise UsageError(f"cannot write {path}: it is one of {info.st_nlink} hard links to the same file")


def _same_file(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:  # either one missing
        return False


def _kind(mode: int) -> str:
    return FILE_KINDS.get(stat.S_IFMT(mode), "special file")


def _staging_folder(path: Path) -> Path:
    """A new temporary folder next to ``path`` (same file system, so the final rename is atomic)."""
    try:
        return Path(tempfile.mkdtemp(prefix=".onnxcompress-", dir=path.parent))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk (where the file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Terminated(BaseException):
    """Raised by the SIGTERM handler of ``_SigtermGuard`` so that the write's cleanup runs."""


class _SigtermGuard:
    """While a write runs in the main thread, SIGTERM raises ``_Terminated`` instead of killing at once.

    On exit the previous handler is restored and a SIGTERM received meanwhile is delivered to it
    (by default that ends the process, as the signal would have without the write). A signal that
    arrives after ``disarm`` (during cleanup) only waits for the exit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous = None
        self.armed = False
        self.received = False

    def __enter__(self) -> _SigtermGuard:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            if previous is not None and previous != signal.SIG_IGN:
                self.previous, self.armed = previous, True
                signal.signal(signal.SIGTERM, self._handle)
        return self

    def disarm(self) -> None:
        """From now on a SIGTERM is only recorded."""
        self.armed = False

    def _handle(self, signum, frame) -> None:
        self.received = True
        if self.armed:
            self.armed = False
            raise _Terminated

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.previous is None:
            return
        signal.signal(signal.SIGTERM, self.previous)
        if self.received:
            signal.raise_signal(signal.SIGTERM)
        if exc_type is _Terminated:  # the previous handler let the process live
            raise UsageError(f"cannot write {self.path}: interrupted by SIGTERM") from None


@contextlib.contextmanager
def _npz(path: str | os.PathLike) -> Iterator[tuple[zipfile.ZipFile, dict[str, ArrayHeader]]]:
    """The open archive and its checked headers (``array_headers``); read errors become one line."""
    path = Path(path)
    with open_data(path) as stream:
        try:
            with zipfile.ZipFile(stream) as archive:
                yield archive, _checked_headers(archive, path)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise UsageError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None


def _checked_headers(archive: zipfile.ZipFile, path: Path) -> dict[str, ArrayHeader]:
    headers: dict[str, ArrayHeader] = {}
    total, budget = 0, array_budget()
    for info in archive.infolist():
        name = info.filename[: -len(NPY_SUFFIX)]
        if not info.filename.endswith(NPY_SUFFIX) or name in headers:
            problem = "appears twice" if name in headers else "is not a .npy array"
            raise UsageError(f"{path}: member {info.filename!r} {problem}")
        with archive.open(info) as stream:  # inflates the header only
            header, header_bytes = _npy_header(stream, f"{path}: member {info.filename!r}")
        label = f"{path}: array {name!r}"
        _check_stored(label, header.nbytes, info.file_size - header_bytes, "its zip member")
        total += header.nbytes
        _check_budget(label, total, budget)
        headers[name] = header
    return headers


def _npy_header(stream: BinaryIO, label: str) -> tuple[ArrayHeader, int]:
    """The ``.npy`` header at the start of ``stream`` and its length in bytes (``label`` starts the errors)."""
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise UsageError(f"{label} has .npy format version {version}, not 1.0 or 2.0")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read(stream)
    if dtype.hasobject:
        raise UsageError(f"{label} holds Python objects, which are never unpickled")
    return ArrayHeader(tuple(shape), dtype, fortran_order), stream.tell()


def _check_stored(label: str, declared: int, stored: int, holder: str) -> None:
    """Refuse a header that promises more (or less) data than is stored: a bomb's, or a corrupt one's."""
    if declared != stored:
        raise UsageError(f"{label} declares {_size(declared)} of data but {holder} holds {_size(max(stored, 0))}")


def _check_budget(label: str, total: int, budget: int) -> None:
    if total > budget:
        raise UsageError(f"{label} takes the declared total to {over_budget(total, budget)}")


def over_budget(total: int, budget: int) -> str:
    """``total`` against ``budget`` for an error line: ``"X, more than the Y budget (its rule)"``."""
    rule = (f"set by --memory-budget or {MEMORY_BUDGET_ENV}" if os.environ.get(MEMORY_BUDGET_ENV)
            else f"{MEMORY_SHARE:.0%} of available memory, at most {_size(MAX_ARRAY_BYTES)}; --memory-budget changes it")
    return f"{_size(total)}, more than the {_size(budget)} budget ({rule})"


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(name + NPY_SUFFIX) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _available_memory() -> int:
    """MemAvailable (Linux), else the free physical memory, else what makes the budget ``MAX_ARRAY_BYTES``."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(MAX_ARRAY_BYTES / MEMORY_SHARE)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
