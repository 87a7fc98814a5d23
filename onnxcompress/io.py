"""Model I/O on onnx_ir: validated loading, atomic saving, never over the input.

Loading checks what ``onnx.load`` lets through (empty or truncated files, random bytes that parse
as an empty ModelProto, opsets newer than the installed onnx, external data whose location escapes
the model's folder by ``..``, an absolute path or a symlink, unknown external-data keys, missing or
short data files) before any tensor is read, so every command gets the same one-line error and no
file outside the model's folder is opened (onnx's CVE-2022-25882 / 2024-27318 / 2025-51480 /
2026-27489 class). Saving writes to a temporary file in the destination folder and renames it into
place, so an interrupted write leaves no partial file; it refuses to write over the input model or
its external data (same path, other spelling, symlink or hard link). Models whose tensors exceed
protobuf's 2 GB limit are saved with their tensors in ``OUT.onnx.data``, a bare name next to the
model (the only location this module ever writes).
"""

from __future__ import annotations

import contextlib
import io as io_module
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass
from google.protobuf.message import DecodeError

from onnxcompress.errors import UsageError

SOURCE_KEY = "onnxcompress.source_path"
PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
MIN_OPSET = 7
EXTERNAL_DATA_KEYS = frozenset({"location", "offset", "length", "checksum"})


def load(path: str | os.PathLike) -> ir.Model:
    """Load an ONNX model, external data included, or raise a one-line ``UsageError``."""
    path = Path(path)
    proto = _read_proto(path)
    _check_model_proto(proto, path)
    _check_external_data(proto, path.parent)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # onnx_ir raises several types for malformed graphs
        raise UsageError(f"{path}: malformed ONNX graph ({_first_line(exc)})") from None
    ir.external_data.set_base_dir(model.graph, str(path.parent.resolve()))
    model.meta[SOURCE_KEY] = str(path.resolve())
    return model


def save(model: ir.Model, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically; refuse to overwrite the files it was loaded from."""
    path = Path(path)
    external = initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    check_output_path(path, source_path(model))
    for written in (path, external_data_path(path)) if external else (path,):
        _refuse_overwriting(written, _external_files(model), "external data of the input model")
    _write_atomically(model, path, external)
    return path


def external_data_path(path: str | os.PathLike) -> Path:
    """Where ``save`` puts the tensors of a model too large for one protobuf: next to it."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (goldens, JSON, JUnit): all of it or nothing."""
    path = Path(path)
    check_output_path(path, None)
    with _staging_folder(path) as tmpdir:
        (tmpdir / path.name).write_bytes(data)
        os.replace(tmpdir / path.name, path)
    return path


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name (never unpickling objects), or a one-line ``UsageError``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: cannot read as .npz ({_first_line(exc)})") from None


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an .npz file, atomically."""
    buffer = io_module.BytesIO()
    np.savez(buffer, **arrays)
    return write_bytes(path, buffer.getvalue())


def check_output_path(path: str | os.PathLike, source: str | os.PathLike | None) -> None:
    """Raise a ``UsageError`` unless ``path`` can be written and is not the ``source`` model.

    "Same file" covers symlinks, hard links and other spellings of the same path.
    """
    path = Path(path)
    if source is not None:
        _refuse_overwriting(path, [Path(source)], "input model")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {folder} is not writable")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder")


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
        raise UsageError(f"{purpose} needs opset >= {version}; converting from opset {current} failed: {_first_line(exc)}") from None
    return converted


def raise_opset(model: ir.Model, version: int, purpose: str) -> bool:
    """Convert ``model`` in place to opset ``version`` when it is below (``upgraded_opset``); True when it was."""
    if default_opset(model) >= version:
        return False
    replace_contents(model, upgraded_opset(to_proto(model), version, purpose))
    return True


def replace_contents(model: ir.Model, proto: onnx.ModelProto) -> None:
    """Make ``model`` (in place) hold the graph, functions and versions of ``proto`` (sorted, unused nodes dropped); keep its metadata."""
    new = ir.serde.deserialize_model(proto)
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
    external = {
        value.name: value.const_value
        for graph in model.graphs()
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


def clone(model: ir.Model) -> ir.Model:
    """An independent copy of ``model`` (passes work in place; the pipeline keeps the original).

    Above the 2 GB protobuf limit the copy shares tensor data with ``model`` (a proto round trip
    is impossible there); passes replace tensors rather than write into them, so that is safe.
    """
    if initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        copy = model.clone()
        copy.meta[SOURCE_KEY] = model.meta.get(SOURCE_KEY)
        return copy
    copy = ir.serde.deserialize_model(to_proto(model))
    copy.meta[SOURCE_KEY] = model.meta.get(SOURCE_KEY)
    return copy


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


def _check_external_data(proto: onnx.ModelProto, folder: Path) -> None:
    """Every external-data location must be a file inside the model's folder, large enough."""
    root = folder.resolve()
    for tensor in _external_tensors(proto):
        info = {entry.key: entry.value for entry in tensor.external_data}
        unknown = sorted(set(info) - EXTERNAL_DATA_KEYS)
        if unknown:
            raise UsageError(f"external data of tensor {tensor.name!r} has unknown keys {unknown}")
        location = info.get("location", "")
        target = _resolve_inside(root, location, tensor.name)
        offset = _non_negative(info.get("offset") or "0", "offset", tensor.name)
        length = _non_negative(info.get("length") or "0", "length", tensor.name)
        if target.stat().st_size < offset + length:
            raise UsageError(
                f"external data file {location!r} for tensor {tensor.name!r} is truncated"
            )


def _resolve_inside(root: Path, location: str, tensor_name: str) -> Path:
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")):
        raise UsageError(f"external data location {location!r} of tensor {tensor_name!r} is not a relative path")
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


def _refuse_overwriting(path: Path, protected: list[Path], what: str) -> None:
    for other in protected:
        if path.exists() and other.exists() and os.path.samefile(path, other):
            raise UsageError(f"refusing to overwrite the {what} {other}; choose another output path")


def _external_files(model: ir.Model) -> list[Path]:
    """Files the model's tensors are still read from (writing over them would corrupt the input)."""
    return sorted({
        Path(value.const_value.path)
        for graph in model.graphs()
        for value in graph.initializers.values()
        if isinstance(value.const_value, ir.ExternalTensor)
    })


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _external_tensors(proto: onnx.ModelProto):
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return [t for t in _get_all_tensors(proto) if uses_external_data(t)]


def _write_atomically(model: ir.Model, path: Path, external: bool) -> None:
    with _staging_folder(path) as tmpdir:
        staged = tmpdir / path.name
        if external:
            data_name = external_data_path(path).name
            ir.save(model, staged, external_data=data_name, size_threshold_bytes=1024)
            os.replace(tmpdir / data_name, path.parent / data_name)
        else:
            proto = to_proto(model)
            if proto.ByteSize() > PROTOBUF_LIMIT:
                raise UsageError(f"cannot write {path}: model exceeds 2 GB")
            staged.write_bytes(proto.SerializeToString())
        os.replace(staged, path)


@contextlib.contextmanager
def _staging_folder(path: Path) -> Iterator[Path]:
    """A temporary folder next to ``path`` (same file system, so the final rename is atomic).

    It is removed whatever happens, so an interrupted write leaves no partial file behind.
    """
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=".onnxcompress-", dir=path.parent))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield tmpdir
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmpdir)
