"""Model I/O against bad and hostile files: one-line errors, no reads outside the model's folder,
no change to the input, atomic writes that never clobber the input or leave partial files."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxcompress import io, runtime
from onnxcompress.errors import UsageError

HOSTILE_CASES = [
    "missing", "folder", "empty", "text", "truncated", "tensor-proto", "no-graph", "opset-too-new",
    "escape-dotdot", "escape-sub", "absolute", "symlink-out", "missing-data", "truncated-data",
    "unknown-key", "bad-offset",
]
OPENED: list[str] | None = None


def _record_opens(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_record_opens)


def digest(folder: Path) -> dict[str, str]:
    """Hash of every regular file under ``folder`` (to prove nothing was changed)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_hostile_file_is_a_one_line_usage_error_and_nothing_outside_is_read(case, hostile_models, tmp_path):
    global OPENED
    path, message = hostile_models[case]
    before = digest(tmp_path)
    OPENED = []
    try:
        with pytest.raises(UsageError) as raised:
            io.load(path)
    finally:
        opened, OPENED = OPENED, None
    assert str(raised.value) == message and "\n" not in message
    assert digest(tmp_path) == before
    folder = os.path.realpath(path.parent)
    library = (os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))
    assert [p for p in opened if not p.startswith((folder + os.sep, *library))] == []


def test_external_data_round_trip_to_another_folder(tmp_path, mlp_model):
    onnx.save(io.to_proto(mlp_model), tmp_path / "src.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    loaded = io.load(tmp_path / "src.onnx")
    (tmp_path / "out").mkdir()
    io.save(loaded, tmp_path / "out" / "copy.onnx")
    assert sorted(os.listdir(tmp_path / "out")) == ["copy.onnx"]
    feeds = runtime.synthetic_inputs(mlp_model, batch=2)
    expected = runtime.run(mlp_model, feeds)["y"]
    np.testing.assert_array_equal(runtime.run(io.load(tmp_path / "out" / "copy.onnx"), feeds)["y"], expected)
    np.testing.assert_array_equal(runtime.run(loaded, feeds)["y"], expected)


def test_model_over_the_protobuf_limit_is_saved_with_external_data(tmp_path, mlp_model, monkeypatch):
    monkeypatch.setattr(io, "EXTERNAL_DATA_THRESHOLD", 1000)
    path = io.save(mlp_model, tmp_path / "big.onnx")
    proto = onnx.load(str(path), load_external_data=False)
    external = {t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert external == {"w1"}  # tensors of 1 KB or more leave the protobuf
    assert io.external_data_path(path).stat().st_size >= 16 * 32 * 4 > path.stat().st_size
    assert sorted(os.listdir(tmp_path)) == ["big.onnx", "big.onnx.data"]
    reloaded = io.load(path)
    feeds = runtime.synthetic_inputs(mlp_model)
    np.testing.assert_array_equal(runtime.run(reloaded, feeds)["y"], runtime.run(mlp_model, feeds)["y"])


def test_output_equal_to_input_is_refused_in_every_spelling(tmp_path, mlp_model):
    (tmp_path / "sub").mkdir()
    source = io.save(mlp_model, tmp_path / "model.onnx")
    model = io.load(source)
    os.symlink(source, tmp_path / "link.onnx")
    os.link(source, tmp_path / "hard.onnx")
    before = digest(tmp_path)
    spellings = [source, tmp_path / "link.onnx", tmp_path / "hard.onnx", tmp_path / "sub" / ".." / "model.onnx"]
    for spelling in spellings:
        with pytest.raises(UsageError, match=f"^refusing to overwrite the input model {source}; choose another output path$"):
            io.save(model, spelling)
    assert digest(tmp_path) == before


def test_output_over_the_inputs_external_data_is_refused(tmp_path, mlp_model):
    onnx.save(io.to_proto(mlp_model), tmp_path / "src.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    before = digest(tmp_path)
    with pytest.raises(UsageError, match=r"^refusing to overwrite the external data of the input model .*w\.bin"):
        io.save(io.load(tmp_path / "src.onnx"), tmp_path / "w.bin")
    assert digest(tmp_path) == before


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing/out.onnx", "cannot write {t}/missing/out.onnx: folder {t}/missing does not exist"),
        ("file.txt/out.onnx", "cannot write {t}/file.txt/out.onnx: folder {t}/file.txt does not exist"),
        ("adir", "cannot write {t}/adir: it is a folder"),
    ],
)
def test_unwritable_outputs(tmp_path, mlp_model, target, message):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UsageError) as raised:
        io.save(mlp_model, tmp_path / target)
    assert str(raised.value) == message.format(t=tmp_path)


def test_permission_denied_is_one_line(tmp_path, mlp_model, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(io.tempfile, "mkdtemp", denied)
    with pytest.raises(UsageError, match=f"^cannot write {tmp_path / 'out.onnx'}: Permission denied$"):
        io.save(mlp_model, tmp_path / "out.onnx")


def test_interrupted_write_leaves_the_old_file_and_no_partial_file(tmp_path, mlp_model, monkeypatch):
    target = io.save(mlp_model, tmp_path / "out.onnx")
    before = digest(tmp_path)

    def write_half_then_die(self: Path, data: bytes) -> int:
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", write_half_then_die)
    changed = io.clone(mlp_model)
    changed.graph.initializers["b1"].const_value = ir.tensor(np.ones(32, np.float32), name="b1")
    with pytest.raises(KeyboardInterrupt):
        io.save(changed, target)
    assert digest(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["out.onnx"]


def test_custom_domain_ops_load_and_save_unchanged(tmp_path):
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) {
      y = com.example.Frobnicate(x)
    }
    """
    path = io.save(ir.from_onnx_text(text), tmp_path / "custom.onnx")
    node = io.load(path).graph.node(0)
    assert (node.domain, node.op_type) == ("com.example", "Frobnicate")
    with pytest.raises(UsageError, match="^ONNX Runtime cannot load the model: "):
        runtime.session(io.load(path))


def test_write_bytes_and_arrays_round_trip(tmp_path):
    io.save_arrays(tmp_path / "a.npz", {"x": np.arange(3)})
    assert io.load_arrays(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "{p}: no such file"),
        (b"not a zip", "{p}: cannot read as .npz ("),
        ("pickle", "{p}: cannot read as .npz (Object arrays cannot be loaded when allow_pickle=False)"),
    ],
)
def test_bad_npz_files(tmp_path, content, message):
    path = tmp_path / "data.npz"
    if content == "pickle":
        np.savez(path, x=np.array([{"a": 1}], dtype=object))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError) as raised:
        io.load_arrays(path)
    assert str(raised.value).startswith(message.format(p=path))


@pytest.mark.parametrize("threshold", [io.EXTERNAL_DATA_THRESHOLD, 1000])
def test_clone_is_independent_below_and_above_the_protobuf_limit(mlp_model, monkeypatch, threshold):
    monkeypatch.setattr(io, "EXTERNAL_DATA_THRESHOLD", threshold)
    copy = io.clone(mlp_model)
    copy.graph.remove(copy.graph.node(3), safe=False)
    copy.graph.initializers["b1"].const_value = ir.tensor(np.zeros(32, np.float32), name="b1")
    assert len(mlp_model.graph) == 4 and len(copy.graph) == 3
    assert np.abs(mlp_model.graph.initializers["b1"].const_value.numpy()).sum() > 0
