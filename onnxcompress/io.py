"""Model I/O on onnx_ir: validated loading, atomic saving, never over the input.

Loading checks what ``onnx.load`` lets through (empty or truncated files, random bytes that parse
as an empty ModelProto, opsets newer than the installed onnx, external data that points outside the
model's folder) so every command gets the same one-line error. Saving writes to a temporary file
in the destination folder and renames it into place, so an interrupted write leaves no partial file;
models whose tensors exceed protobuf's 2 GB limit are saved with external data automatically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from onnxcompress.errors import UsageError

SOURCE_KEY = "onnxcompress.source_path"
PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
MIN_OPSET = 7


def load(path: str | os.PathLike) -> ir.Model:
    """Load an ONNX model, external data included, or raise a one-line ``UsageError``."""
    path = Path(path)
    proto = _read_proto(path)
    _check_model_proto(proto, path)
    _check_external_data(proto, path.parent)
    model = ir.serde.deserialize_model(proto)
    ir.external_data.set_base_dir(model.graph, str(path.parent.resolve()))
    model.meta[SOURCE_KEY] = str(path.resolve())
    return model


def save(model: ir.Model, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically; refuse to overwrite the file it was loaded from."""
    path = Path(path)
    check_output_path(path, source_path(model))
    external = initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    _write_atomically(model, path, external)
    return path


def check_output_path(path: str | os.PathLike, source: str | os.PathLike | None) -> None:
    """Raise a ``UsageError`` unless ``path`` can be written and is not the ``source`` model."""
    path = Path(path)
    if source is not None and path.exists() and path.resolve() == Path(source).resolve():
        raise UsageError(f"refusing to overwrite the input model {path}; choose another output path")
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


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """Serialize to a ModelProto with every tensor inline (loads external data)."""
    return ir.serde.serialize_model(model)


def clone(model: ir.Model) -> ir.Model:
    """An independent copy of ``model`` (passes work in place; the pipeline keeps the original)."""
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
        location = info.get("location", "")
        target = _resolve_inside(root, location, tensor.name)
        offset = int(info.get("offset", 0) or 0)
        length = info.get("length")
        needed = offset + int(length) if length else offset
        if target.stat().st_size < needed:
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


def _external_tensors(proto: onnx.ModelProto):
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return [t for t in _get_all_tensors(proto) if uses_external_data(t)]


def _write_atomically(model: ir.Model, path: Path, external: bool) -> None:
    folder = path.parent
    tmpdir = Path(tempfile.mkdtemp(prefix=".onnxcompress-", dir=folder))
    try:
        staged = tmpdir / path.name
        if external:
            data_name = path.name + ".data"
            ir.save(model, staged, external_data=data_name, size_threshold_bytes=1024)
            os.replace(tmpdir / data_name, folder / data_name)
        else:
            proto = to_proto(model)
            if proto.ByteSize() > PROTOBUF_LIMIT:
                raise UsageError(f"cannot write {path}: model exceeds 2 GB")
            staged.write_bytes(proto.SerializeToString())
        os.replace(staged, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmpdir)
