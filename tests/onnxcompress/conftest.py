"""Tiny models and test-only passes shared by the core's tests (registered as ``test-*``)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import resource

import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from onnxcompress import io
from onnxcompress.passes import CompressionPass

MLP_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
mlp (float[N, 16] x) => (float[N, 4] y) <float[16, 32] w1 = {0.0}, float[32] b1 = {0.0}, float[32, 4] w2 = {0.0}> {
  h = MatMul(x, w1)
  hb = Add(h, b1)
  r = Relu(hb)
  y = MatMul(r, w2)
}
"""

CNN_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
cnn (float[N, 3, 8, 8] x) => (float[N, 10] y) <float[4, 3, 3, 3] w = {0.0}, float[4] b = {0.0}, float[10, 256] fc = {0.0}> {
  c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
  r = Relu(c)
  f = Flatten(r)
  y = Gemm <transB = 1> (f, fc)
}
"""


def with_random_weights(text: str, seed: int = 0) -> ir.Model:
    """Parse ONNX text (initializers written as placeholders ``= {0.0}``) and fill them with seeded random values."""
    rng = np.random.default_rng(seed)
    declared = onnx.parser.parse_model(text).graph.initializer
    tensors = [ir.tensor(rng.standard_normal(tuple(t.dims)).astype(np.float32) * 0.3, name=t.name) for t in declared]
    model = ir.from_onnx_text(text)
    for tensor in tensors:
        model.graph.initializers[tensor.name].const_value = tensor
    return model


@pytest.fixture
def mlp_model() -> ir.Model:
    """A two-layer MLP with a dynamic batch."""
    return with_random_weights(MLP_TEXT)


@pytest.fixture
def cnn_model() -> ir.Model:
    """Conv → Relu → Flatten → Gemm."""
    return with_random_weights(CNN_TEXT, seed=1)


@pytest.fixture
def mlp_path(tmp_path, mlp_model):
    """The MLP saved to a file."""
    return io.save(mlp_model, tmp_path / "mlp.onnx")


@pytest.fixture
def cnn_path(tmp_path, cnn_model):
    """The CNN saved to a file."""
    return io.save(cnn_model, tmp_path / "cnn.onnx")


class NoOp(CompressionPass):
    """Change nothing (an exact pass that notes it had nothing to do)."""

    name = "test-noop"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.note("nothing to do")
        self.context.details["visited"] = len(model.graph)
        return ir.passes.PassResult(model, modified=False)


class ScaleWeights(CompressionPass):
    """Multiply every float initializer by ``factor`` (lossy: changes the outputs)."""

    name = "test-scale"
    exact = False

    def __init__(self, factor: Annotated[float, "what every float initializer is multiplied by"] = 0.5) -> None:
        super().__init__()
        self.factor = factor

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for value in model.graph.initializers.values():
            value.const_value = ir.tensor(value.const_value.numpy() * self.factor, name=value.name)
        self.note(f"scaled {len(model.graph.initializers)} initializers by {self.factor}")
        return ir.passes.PassResult(model, modified=True)


class WronglyExact(ScaleWeights):
    """Scale the weights while claiming to be exact (the pipeline must catch it)."""

    name = "test-wrongly-exact"
    exact = True


class SlowDown(CompressionPass):
    """Append ``depth`` Exp→Log pairs to the first output (lossy only by float rounding, much slower)."""

    name = "test-slowdown"
    exact = False

    def __init__(self, depth: Annotated[int, "Exp→Log pairs appended to the first output"] = 300) -> None:
        super().__init__()
        self.depth = depth

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        output = graph.outputs[0]
        current = output
        for _ in range(self.depth):
            exp = ir.node("Exp", [current])
            log = ir.node("Log", [exp.outputs[0]])
            graph.extend([exp, log])
            current = log.outputs[0]
        current.shape, current.type = output.shape, output.type
        name = output.name
        output.name = f"{name}_before_slowdown"
        current.name = name
        graph.outputs[0] = current
        return ir.passes.PassResult(model, modified=True)


@pytest.fixture
def verify_models(tmp_path, cnn_model) -> dict:
    """The CNN as ``ref``, an exact ``copy``, a ``perturbed`` weight, and a conv with ``wrong_channels``.

    The wrong-channel conv has a weight for 2 input channels on a 3-channel input: the onnx checker
    and strict shape inference accept it; only a session that runs it (or our channel rules) sees it.
    """
    paths = {"ref": io.save(cnn_model, tmp_path / "ref.onnx"), "copy": io.save(io.clone(cnn_model), tmp_path / "copy.onnx")}
    perturbed = io.clone(cnn_model)
    weight = perturbed.graph.initializers["w"]
    weight.const_value = ir.tensor(weight.const_value.numpy() + 0.05, name="w")
    paths["perturbed"] = io.save(perturbed, tmp_path / "perturbed.onnx")
    wrong = io.clone(cnn_model)
    wrong_weight = wrong.graph.initializers["w"]
    wrong_weight.const_value = ir.tensor(np.ones((4, 2, 3, 3), np.float32), name="w")
    wrong_weight.shape = ir.Shape([4, 2, 3, 3])
    paths["wrong_channels"] = io.save(wrong, tmp_path / "wrong_channels.onnx")
    return paths


@pytest.fixture
def int8_models(tmp_path, cnn_model) -> dict:
    """The CNN (``ref``), its quantize-static INT8 form (``int8``), the ``calibration`` .npz it was calibrated
    on, and held-out ``inputs`` (.npz, 16 samples) from the same distribution, all as paths.

    The INT8 model is close in cosine, SNR and top-k but not within the default rtol/atol.
    """
    from onnxcompress import calibration, spec

    rng = np.random.default_rng(0)
    paths = {"ref": io.save(cnn_model, tmp_path / "ref.onnx")}
    paths["calibration"] = io.save_arrays(tmp_path / "calibration.npz", {"x": rng.standard_normal((32, 3, 8, 8)).astype(np.float32)})
    paths["inputs"] = io.save_arrays(tmp_path / "inputs.npz", {"x": rng.standard_normal((16, 3, 8, 8)).astype(np.float32)})
    reader = calibration.open_reader(paths["calibration"], cnn_model)
    quantized = spec.parse_pass("quantize-static").apply(io.clone(cnn_model), calibration=reader).model
    paths["int8"] = io.save(quantized, tmp_path / "int8.onnx")
    return paths


def _external_model(folder, model: ir.Model, **entries: str):
    """Save ``model`` with its tensors in ``weights.bin`` and then overwrite external-data entries."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    folder.mkdir(parents=True, exist_ok=True)
    proto = io.to_proto(model)
    onnx.save(proto, folder / "model.onnx", save_as_external_data=True, location="weights.bin", size_threshold=0)
    proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    tensor = next(t for t in _get_all_tensors(proto) if uses_external_data(t))
    for key, value in entries.items():
        found = [e for e in tensor.external_data if e.key == key]
        entry = found[0] if found else tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(proto, folder / "model.onnx")
    return folder / "model.onnx", tensor.name


@pytest.fixture
def hostile_models(tmp_path, mlp_model) -> dict:
    """Bad and hostile model files by case name, each with the one-line error every command must give.

    Messages are templates over ``{path}`` (the model file as given).
    """
    cases = {}
    good = io.to_proto(mlp_model).SerializeToString()

    def add(name: str, path, message: str) -> None:
        cases[name] = (path, message.replace("{path}", str(path)))

    add("missing", tmp_path / "nope.onnx", "{path}: no such file")
    (tmp_path / "folder.onnx").mkdir()
    add("folder", tmp_path / "folder.onnx", "{path}: is a folder, not an ONNX model")
    (tmp_path / "empty.onnx").write_bytes(b"")
    add("empty", tmp_path / "empty.onnx", "{path}: empty file, not an ONNX model")
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    add("text", tmp_path / "text.onnx", "{path}: not an ONNX model or truncated (DecodeError)")
    (tmp_path / "truncated.onnx").write_bytes(good[: len(good) // 2])
    add("truncated", tmp_path / "truncated.onnx", "{path}: not an ONNX model or truncated (DecodeError)")
    tensor_file = tmp_path / "tensor.onnx"
    tensor_file.write_bytes(onnx.numpy_helper.from_array(np.ones((3, 3), np.float32), "t").SerializeToString())
    add("tensor-proto", tensor_file, "{path}: not an ONNX model or truncated (DecodeError)")
    (tmp_path / "no-graph.onnx").write_bytes(onnx.ModelProto(ir_version=8).SerializeToString())
    add("no-graph", tmp_path / "no-graph.onnx", "{path}: not an ONNX model (no graph or no outputs)")
    newer = io.to_proto(mlp_model)
    newer.opset_import[0].version = 99
    onnx.save(newer, tmp_path / "newer.onnx")
    add("opset-too-new", tmp_path / "newer.onnx",
        f"{{path}}: opset 99 is newer than the installed onnx supports ({onnx.defs.onnx_opset_version()})")

    external_cases = {
        "escape-dotdot": ({"location": "../../etc/passwd"}, "external data location '../../etc/passwd' of tensor '{t}' escapes the model's folder"),
        "escape-sub": ({"location": "sub/../../x"}, "external data location 'sub/../../x' of tensor '{t}' escapes the model's folder"),
        "absolute": ({"location": "/etc/passwd"}, "external data location '/etc/passwd' of tensor '{t}' is not a relative path"),
        "symlink-out": ({"location": "link.bin"}, "external data location 'link.bin' of tensor '{t}' escapes the model's folder"),
        "missing-data": ({"location": "gone.bin"}, "external data file 'gone.bin' for tensor '{t}' is missing"),
        "truncated-data": ({"length": "99999999"}, "external data file 'weights.bin' for tensor '{t}' is truncated"),
        "unknown-key": ({"__class__": "x"}, "external data of tensor '{t}' has unknown keys ['__class__']"),
        "bad-offset": ({"offset": "-8"}, "external data offset '-8' of tensor '{t}' is not a non-negative integer"),
    }
    for name, (entries, message) in external_cases.items():
        path, tensor_name = _external_model(tmp_path / name, mlp_model, **entries)
        if name == "symlink-out":
            outside = tmp_path / "outside.bin"
            outside.write_bytes((path.parent / "weights.bin").read_bytes())
            (path.parent / "link.bin").symlink_to(outside)
        add(name, path, message.format(t=tensor_name))
    return cases


BOMB_SHAPE = (2**31, 16)  # float32: 137 GB declared


def npy_bomb_bytes() -> bytes:
    """A ``.npy`` whose header declares float32 ``BOMB_SHAPE`` but which holds 1 MB of zeros."""
    import io as io_module

    header = io_module.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": BOMB_SHAPE})
    return header.getvalue() + bytes(1_000_000)


def write_npz_bomb(path, names, *, consistent: bool = True):
    """An .npz of a few kilobytes whose members are each ``npy_bomb_bytes()``.

    With ``consistent`` the zip directory also claims the declared size (a real zip bomb: only the
    memory budget stops it); otherwise it gives the stored size (a header that lies about its data).
    """
    import zipfile

    member = npy_bomb_bytes()
    declared = len(member) - 1_000_000 + int(np.prod(BOMB_SHAPE)) * 4
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(f"{name}.npy", member)
            if consistent:
                archive.filelist[-1].file_size = declared
    return path


@pytest.fixture
def npz_bomb():
    """``write_npz_bomb``, for tests that feed a zip bomb to a command."""
    return write_npz_bomb


@pytest.fixture
def npy_bomb() -> bytes:
    """``npy_bomb_bytes()``, for tests that plant a bomb ``.npy``."""
    return npy_bomb_bytes()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: appended to a message's bytes it adds (or merges) that field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _vector(name: str, dtype: int = TensorProto.FLOAT) -> bytes:
    return helper.make_tensor_value_info(name, dtype, [1, 4] if dtype == TensorProto.FLOAT else [])


def _branch(depth: int, tag: str) -> bytes:
    """Bytes of a graph whose output ``y_tag`` is ``x`` under ``depth`` nested If nodes (else branches negate)."""
    out = f"y_{tag}"
    if depth == 0:
        return helper.make_graph([helper.make_node("Identity", ["x"], [out])], tag, [], [_vector(out)]).SerializeToString()
    negate = helper.make_graph([helper.make_node("Neg", ["x"], [f"n_{tag}"])], f"n{tag}", [], [_vector(f"n_{tag}")])
    node = helper.make_node("If", ["c"], [out], else_branch=negate).SerializeToString()
    then = helper.AttributeProto(name="then_branch", type=helper.AttributeProto.GRAPH).SerializeToString()
    node += _field(5, then + _field(6, _branch(depth - 1, tag + "t")))  # NodeProto.attribute, AttributeProto.g
    return helper.make_graph([], tag, [], [_vector(out)]).SerializeToString() + _field(1, node)  # GraphProto.node


def _nested_if_model(path, depth: int) -> str:
    """``y = x`` under ``depth`` nested If nodes, written as raw protobuf: Python protobuf cannot hold it past ~33."""
    inputs = helper.make_graph([], "main", [_vector("x"), _vector("c", TensorProto.BOOL)], []).SerializeToString()
    model = helper.make_model(helper.make_graph([], "main", [], []), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.ClearField("graph")
    path.write_bytes(model.SerializeToString() + _field(7, _branch(depth, "r") + inputs))  # ModelProto.graph
    return str(path)


@pytest.fixture
def nested_if_model():
    """Builder ``(path, depth) -> path`` of ``y = x`` under ``depth`` nested If nodes (raw protobuf bytes)."""
    return _nested_if_model


HEADROOM = 3 * 2**30  # address space a test may grow by: a regression fails on its 8 GB draw, not the machine


@pytest.fixture
def capped_address_space():
    """Lower this process's address-space limit to its current size plus ``HEADROOM`` for one test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (current + HEADROOM, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
