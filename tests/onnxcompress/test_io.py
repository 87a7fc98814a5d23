"""Model I/O against bad and hostile files: one-line errors, no reads outside the model's folder,
no change to the input, atomic writes that never clobber the input or leave partial files."""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnxruntime.datasets import get_example

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
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if _regular(p)}


def listing(folder: Path) -> dict[str, int]:
    """Every entry under ``folder`` with its file type (``lstat``): nothing added, removed or replaced."""
    return {str(p): stat.S_IFMT(os.lstat(p).st_mode) for p in sorted(folder.rglob("*"))}


def _regular(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


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


def test_hard_linked_external_data_is_a_one_line_error(tmp_path, mlp_model):
    """onnx_ir refuses to read such a file (it could be any file on the disk); the loader says so before a pass trips on it."""
    onnx.save(io.to_proto(mlp_model), tmp_path / "src.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    os.link(tmp_path / "w.bin", tmp_path / "other.bin")
    with pytest.raises(UsageError, match=r"^external data file 'w\.bin' for tensor '\w+' is one of 2 hard links to the same file$"):
        io.load(tmp_path / "src.onnx")


def test_a_nul_character_in_an_external_location_is_a_one_line_error(tmp_path, mlp_model):
    """The path functions raise a raw ValueError ('embedded null byte') on it."""
    proto = io.to_proto(mlp_model)
    onnx.save(proto, tmp_path / "src.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    proto = onnx.load(str(tmp_path / "src.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            entry.value = "w\0.bin" if entry.key == "location" else entry.value
    onnx.save(proto, tmp_path / "nul.onnx")
    with pytest.raises(UsageError, match=r"^external data location 'w\\x00\.bin' of tensor '\w+' holds a NUL character$"):
        io.load(tmp_path / "nul.onnx")


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


@pytest.mark.parametrize("spelling", ["w.bin", "sub/../w.bin", "link.bin", "hard.bin"])
def test_output_over_the_inputs_external_data_is_refused(tmp_path, mlp_model, spelling):
    onnx.save(io.to_proto(mlp_model), tmp_path / "src.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    source = io.load(tmp_path / "src.onnx")
    inlined = io.clone(source)  # holds the tensors inline: the input's file is still protected
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.bin").symlink_to(tmp_path / "w.bin")
    os.link(tmp_path / "w.bin", tmp_path / "hard.bin")  # after loading: the loader refuses hard-linked external data
    before = digest(tmp_path)
    message = f"^refusing to overwrite the external data of the input model {tmp_path / 'w.bin'}; choose another output path$"
    writes = [
        lambda path: io.save(source, path),
        lambda path: io.save(inlined, path),
        lambda path: io.save(inlined, path, inputs=[source]),
        lambda path: io.write_bytes(path, b"{}", inputs=[source]),
        lambda path: io.save_arrays(path, {"x": np.zeros(2)}, inputs=[source]),
    ]
    for write in writes:
        with pytest.raises(UsageError, match=message):
            write(tmp_path / spelling)
    assert digest(tmp_path) == before


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing/out.onnx", "cannot write {t}/missing/out.onnx: folder {t}/missing does not exist"),
        ("file.txt/out.onnx", "cannot write {t}/file.txt/out.onnx: folder {t}/file.txt does not exist"),
        ("adir", "cannot write {t}/adir: it is a folder"),
        ("fifo", "cannot write {t}/fifo: it is a FIFO, not a regular file"),
        ("socket", "cannot write {t}/socket: it is a socket, not a regular file"),
        ("link-out", "cannot write {t}/link-out: it is a symbolic link, not a regular file"),
        ("dangling", "cannot write {t}/dangling: it is a symbolic link, not a regular file"),
        ("shared", "cannot write {t}/shared: it is one of 2 hard links to the same file"),
    ],
)
def test_unwritable_outputs(tmp_path, mlp_model, target, message):
    """Every writer refuses what is not a plain regular file, and changes nothing (checked through ``save``
    and ``write_bytes``: one writer)."""
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "socket"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    (tmp_path / "link-out").symlink_to(outside / "victim.txt")
    (tmp_path / "dangling").symlink_to(outside / "created.txt")
    (outside / "shared.txt").write_text("keep me too")
    os.link(outside / "shared.txt", tmp_path / "shared")
    before = listing(tmp_path), digest(tmp_path)
    try:
        for write in (lambda path: io.save(mlp_model, path), lambda path: io.write_bytes(path, b"{}")):
            with pytest.raises(UsageError) as raised:
                write(tmp_path / target)
            assert str(raised.value) == message.format(t=tmp_path)
    finally:
        listener.close()
    assert (listing(tmp_path), digest(tmp_path)) == before


def test_the_system_dev_null_stays_a_device():
    """``--json /dev/null`` as root would replace the system's /dev/null with a regular file."""
    with pytest.raises(UsageError, match="^cannot write /dev/null: it is a character device, not a regular file$"):
        io.write_bytes("/dev/null", b"{}")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode) and not list(Path("/dev").glob(".onnxcompress-*"))


def test_a_regular_output_is_replaced_whole(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    old_inode = target.stat().st_ino
    io.write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["out.json"]
    assert target.stat().st_ino != old_inode  # renamed into place, not written through


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


SIGTERM_DURING_SAVE = """
import os, signal, sys
from pathlib import Path
from onnxcompress import io

real_write_bytes = Path.write_bytes

def write_half_then_get_terminated(self, data):
    real_write_bytes(self, data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGTERM)
    real_write_bytes(self, data)

Path.write_bytes = write_half_then_get_terminated
io.save(io.load(sys.argv[1]), sys.argv[2])
print("survived SIGTERM")
"""


def test_sigterm_while_saving_leaves_the_old_file_and_no_staging_folder(tmp_path, mlp_model):
    source = io.save(mlp_model, tmp_path / "in.onnx")
    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous result")
    before = digest(tmp_path)
    done = subprocess.run([sys.executable, "-c", SIGTERM_DURING_SAVE, str(source), str(target)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "survived" not in done.stdout and "Traceback" not in done.stderr
    assert digest(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["in.onnx", "out.onnx"]


def test_sigterm_handled_by_the_caller_aborts_the_write_cleanly(tmp_path, monkeypatch):
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    real_write_bytes = Path.write_bytes

    def write_half_then_get_terminated(self, data):
        real_write_bytes(self, data[:1])
        os.kill(os.getpid(), signal.SIGTERM)
        real_write_bytes(self, data)

    try:
        monkeypatch.setattr(Path, "write_bytes", write_half_then_get_terminated)
        with pytest.raises(UsageError, match=f"^cannot write {tmp_path / 'out.json'}: interrupted by SIGTERM$"):
            io.write_bytes(tmp_path / "out.json", b"{}")
        monkeypatch.undo()
        handler = signal.getsignal(signal.SIGTERM)
        io.write_bytes(tmp_path / "ok.json", b"{}")
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == [signal.SIGTERM]  # delivered to the handler that was there before the write
    assert os.listdir(tmp_path) == ["ok.json"]


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


def test_a_model_with_map_outputs_is_refused_naming_them_and_zipmap():
    """ORT's own scikit-learn logistic regression (a ZipMap's sequence of maps as output): onnx-ir has no map type."""
    path = Path(get_example("logreg_iris.onnx"))
    with pytest.raises(UsageError, match=r"^\S+logreg_iris.onnx: 'probabilities' holds maps \(a ZipMap's output: skl2onnx .*'zipmap': False"):
        io.load(path)


def test_write_bytes_and_arrays_round_trip(tmp_path):
    io.save_arrays(tmp_path / "a.npz", {"x": np.arange(3)})
    assert io.load_arrays(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "{p}: no such file"),
        (b"not a zip", "{p}: not a readable .npz file (BadZipFile)"),
        ("npy", "{p}: not a readable .npz file (BadZipFile)"),
        ("pickle", "{p}: member 'x.npy' holds Python objects, which are never unpickled"),
        ("text-member", "{p}: member 'notes.txt' is not a .npy array"),
        ("truncated", "{p}: not a readable .npz file (BadZipFile)"),
    ],
)
def test_bad_npz_files(tmp_path, content, message):
    path = tmp_path / "data.npz"
    if content == "pickle":
        np.savez(path, x=np.array([{"a": 1}], dtype=object))
    elif content == "npy":
        with open(path, "wb") as handle:
            np.save(handle, np.zeros(3))
    elif content == "text-member":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    elif content == "truncated":
        np.savez(path, x=np.zeros(1000))
        path.write_bytes(path.read_bytes()[:-200])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError) as raised:
        io.load_arrays(path)
    assert str(raised.value) == message.format(p=path)


@pytest.mark.parametrize("consistent", [True, False])
def test_a_zip_bomb_is_refused_from_its_headers_fast_and_in_little_memory(tmp_path, npz_bomb, consistent):
    path = npz_bomb(tmp_path / "bomb.npz", ["x"], consistent=consistent)
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(UsageError) as raised:
            io.load_arrays(path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = "takes the declared total to 137.4 GB, more than the" if consistent else "declares 137.4 GB of data but its zip member holds 1.0 MB"
    assert str(raised.value).startswith(f"{path}: array 'x' {expected}")
    assert seconds < 1.0 and peak < 5_000_000


def test_arrays_beyond_the_memory_budget_are_refused(tmp_path, monkeypatch):
    path = io.save_arrays(tmp_path / "a.npz", {"x": np.zeros(100, np.float32), "y": np.zeros(100, np.float32)})
    assert io.array_budget() >= 800
    monkeypatch.setattr(io, "MAX_ARRAY_BYTES", 600)
    assert io.array_budget() == 600
    with pytest.raises(UsageError, match=r"array 'y' takes the declared total to 800 bytes, more than the 600 bytes budget \(25% of available memory"):
        io.load_arrays(path)


def test_the_budget_the_user_sets_holds_above_and_below_the_default(tmp_path, monkeypatch):
    path = io.save_arrays(tmp_path / "a.npz", {"x": np.zeros(100, np.float32), "y": np.zeros(100, np.float32)})
    monkeypatch.setattr(io, "MAX_ARRAY_BYTES", 600)
    monkeypatch.setenv(io.MEMORY_BUDGET_ENV, "1kB")
    assert io.array_budget() == 1000
    assert set(io.load_arrays(path)) == {"x", "y"}
    monkeypatch.setenv(io.MEMORY_BUDGET_ENV, "0.7 kb")
    with pytest.raises(UsageError, match=r"800 bytes, more than the 700 bytes budget \(set by --memory-budget"):
        io.load_arrays(path)


@pytest.mark.parametrize(("text", "size"), [("8GB", 8 * 10**9), ("512mb", 512 * 10**6), ("1.5 G", 1_500_000_000), ("4096", 4096), ("2kB", 2000)])
def test_sizes_parse_in_decimal_units(text, size):
    assert io.parse_size(text) == size


def test_array_headers_describe_members_without_reading_them(tmp_path):
    path = io.save_arrays(tmp_path / "a.npz", {"x": np.zeros((3, 4), np.float16), "ids": np.asfortranarray(np.ones((2, 5), np.int64))})
    headers = io.array_headers(path)
    assert headers == {
        "x": io.ArrayHeader((3, 4), np.dtype(np.float16), False),
        "ids": io.ArrayHeader((2, 5), np.dtype(np.int64), True),
    }
    assert [h.nbytes for h in headers.values()] == [24, 80]
    np.testing.assert_array_equal(io.load_arrays(path)["ids"], np.ones((2, 5)))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 16), np.float32), "extra": np.zeros(2)}, "inputs ['extra'] are not inputs of the model; it takes ['x']"),
        ({"y": np.zeros((2, 4), np.float32)}, "inputs lack ['x']; the model takes ['x']"),
        ({"x": np.zeros((2, 4, 4), np.float32)}, "{p}: input 'x' has shape (2, 4, 4) but the model expects rank 2"),
    ],
)
def test_arrays_for_a_model_are_checked_against_its_signature_before_loading(tmp_path, mlp_model, monkeypatch, arrays, message):
    path = io.save_arrays(tmp_path / "inputs.npz", arrays)
    monkeypatch.setattr(io, "_read_member", lambda *a: pytest.fail("inflated before the signature check"))
    with pytest.raises(UsageError) as raised:
        io.load_arrays(path, mlp_model)
    assert str(raised.value) == message.format(p=path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("bomb", "{p}: the array declares 137.4 GB of data but the file holds 1.0 MB"),
        ("pickle", "{p}: the array holds Python objects, which are never unpickled"),
        ("text", "{p}: not a readable .npy array"),
    ],
)
def test_a_single_npy_is_checked_like_an_npz_member(tmp_path, npy_bomb, content, message):
    path = tmp_path / "image.npy"
    if content == "bomb":
        path.write_bytes(npy_bomb)
    elif content == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_text("not an array")
    with pytest.raises(UsageError) as raised:
        io.load_npy(path)
    assert str(raised.value) == message.format(p=path)
    np.save(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
    np.testing.assert_array_equal(io.load_npy(path), np.arange(6).reshape(2, 3))


def test_arrays_matching_the_model_load(tmp_path, mlp_model):
    path = io.save_arrays(tmp_path / "inputs.npz", {"x": np.ones((2, 16), np.float32)})
    assert io.load_arrays(path, mlp_model)["x"].shape == (2, 16)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "recipe {p}: no such file"),
        ("folder", "recipe {p}: is a folder, not a file"),
        ("fifo", "recipe {p}: is a FIFO, not a regular file"),
        ("dev-zero", "recipe {p}: is a character device, not a regular file"),
        ("socket", "recipe {p}: is a socket, not a regular file"),
        ("too-large", "recipe {p}: larger than 1.0 kB, too large for a file"),
        ("latin-1", "recipe {p}: not UTF-8 text"),
    ],
)
def test_data_paths_other_than_small_regular_files_are_refused_without_opening_them(tmp_path, kind, message):
    path = tmp_path / "data"
    listener = socket.socket(socket.AF_UNIX)
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "socket":
        listener.bind(str(path))
    elif kind == "too-large":
        path.write_text("x" * 1001)
    elif kind == "latin-1":
        path.write_bytes("café".encode("latin-1"))
    global OPENED
    OPENED = []
    try:
        with pytest.raises(UsageError) as raised:
            io.read_text(path, prefix="recipe ", limit=1000)
    finally:
        opened, OPENED = OPENED, None
        listener.close()
    assert str(raised.value) == message.format(p=path)
    if kind not in ("too-large", "latin-1"):
        assert os.path.realpath(path) not in opened


def test_a_data_path_swapped_for_a_fifo_after_the_check_is_refused_without_blocking(tmp_path, monkeypatch):
    path = tmp_path / "data.toml"
    os.mkfifo(path)
    monkeypatch.setattr(io, "check_data_path", lambda p, *a, **k: Path(p))  # the race: the check saw a file
    with pytest.raises(UsageError, match=f"^{path}: is a FIFO, not a regular file$"):
        io.read_text(path)


def test_folders_are_data_paths_only_where_allowed(tmp_path):
    assert io.check_data_path(tmp_path, folder=True) == tmp_path
    with pytest.raises(UsageError, match=f"^{tmp_path}: is a folder, not a file$"):
        io.check_data_path(tmp_path)


@pytest.mark.parametrize("threshold", [io.EXTERNAL_DATA_THRESHOLD, 1000])
def test_clone_is_independent_below_and_above_the_protobuf_limit(mlp_model, monkeypatch, threshold):
    monkeypatch.setattr(io, "EXTERNAL_DATA_THRESHOLD", threshold)
    copy = io.clone(mlp_model)
    copy.graph.remove(copy.graph.node(3), safe=False)
    copy.graph.initializers["b1"].const_value = ir.tensor(np.zeros(32, np.float32), name="b1")
    assert len(mlp_model.graph) == 4 and len(copy.graph) == 3
    assert np.abs(mlp_model.graph.initializers["b1"].const_value.numpy()).sum() > 0


def test_a_model_reading_no_file_is_serialized_without_walking_the_protos_tensors(mlp_model, monkeypatch):
    monkeypatch.setattr(io, "_external_tensors", lambda proto: pytest.fail("walked every tensor of a model with no external data"))
    assert io.to_proto(mlp_model) == ir.serde.serialize_model(mlp_model)


def test_external_data_of_a_constant_inside_a_subgraph_is_found_and_refused_in_one_line(tmp_path):
    h = onnx.helper
    constant = h.make_node("Constant", [], ["k"], value=onnx.numpy_helper.from_array(np.arange(4, dtype=np.float32), "k"))
    then = h.make_graph([constant, h.make_node("Add", ["x", "k"], ["r"])], "t", [], [h.make_tensor_value_info("r", onnx.TensorProto.FLOAT, [4])])
    other = h.make_graph([h.make_node("Neg", ["x"], ["r2"])], "e", [], [h.make_tensor_value_info("r2", onnx.TensorProto.FLOAT, [4])])
    graph = h.make_graph([h.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], "g",
                         [h.make_tensor_value_info("c", onnx.TensorProto.BOOL, []), h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.external_data_helper.convert_model_to_external_data(proto, location="k.bin", size_threshold=0, convert_attribute=True)
    onnx.save(proto, tmp_path / "m.onnx")
    loaded = io.load(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match="external data outside initializers is not supported"):
        io.to_proto(loaded)


def test_the_garbage_collector_rests_while_a_graph_is_built(mlp_path, monkeypatch):
    seen = []
    build = ir.serde.deserialize_model
    monkeypatch.setattr(ir.serde, "deserialize_model", lambda proto: seen.append(gc.isenabled()) or build(proto))
    io.Snapshot(io.load(mlp_path)).copy()
    assert seen == [False, False] and gc.isenabled()


def test_a_snapshot_is_saved_as_the_model_is(tmp_path, mlp_model):
    io.save(mlp_model, tmp_path / "plain.onnx")
    io.save(mlp_model, tmp_path / "snapshot.onnx", snapshot=io.Snapshot(mlp_model))
    assert (tmp_path / "plain.onnx").read_bytes() == (tmp_path / "snapshot.onnx").read_bytes()


def test_load_with_snapshot_keeps_the_files_proto_and_inlines_external_data(tmp_path, mlp_model, monkeypatch):
    io.save(mlp_model, tmp_path / "m.onnx")
    onnx.save(io.to_proto(mlp_model), tmp_path / "x.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    serialize, serialized = ir.serde.serialize_model, []
    monkeypatch.setattr(ir.serde, "serialize_model", lambda *a, **k: serialized.append(1) or serialize(*a, **k))
    model, state = io.load_with_snapshot(tmp_path / "m.onnx")
    assert state.proto == onnx.load(str(tmp_path / "m.onnx")) and serialized == []  # the file's proto, not serialized again
    assert [v.name for v in model.graph.inputs] == [i.name for i in state.proto.graph.input]
    _, external = io.load_with_snapshot(tmp_path / "x.onnx")
    assert serialized == [1] and all(t.data_location == onnx.TensorProto.DEFAULT and t.raw_data for t in external.proto.graph.initializer)


def test_replacing_a_models_contents_keeps_the_shapes_it_declares_for_its_interface():
    # ORT's quantizers merge symbolic dims: an ORT GenAI model's present.N.key [batch, 2, total_sequence_length, 32]
    # came back as [batch, 2, past_sequence_length, 32]
    text = """<ir_version: 8, opset_import: ["" : 17]>
g (float[B, {dim}] x) => (float[B, {dim}] y) {{ y = Relu(x) }}"""
    model = ir.from_onnx_text(text.format(dim="total"))
    io.replace_contents(model, onnx.parser.parse_model(text.format(dim="past")))
    assert [str(v.shape) for v in (*model.graph.inputs, *model.graph.outputs)] == ["[B,total]", "[B,total]"]


def test_an_opset_conversion_over_ops_onnx_runtime_puts_in_the_onnx_domain_names_them():
    # ORT GenAI's models hold SimplifiedLayerNormalization in the ONNX domain: the converter's own message was an
    # assertion from its C++ source with an unfilled '%s'
    proto = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 4] x, float[4] s) => (float[2, 4] y) { y = SimplifiedLayerNormalization(x, s) }""")
    with pytest.raises(UsageError, match=r"converting from opset 17 failed: the ONNX domain holds SimplifiedLayerNormalization, which ONNX Runtime"):
        io.upgraded_opset(proto, 23, "fuse:opset")
