"""If nested as deep as protobuf lets ONNX and ONNX Runtime read (31 levels) goes through every command;
deeper (50, 500) is one line and exit 2 from every command and from ``io.load``, the file untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnxcompress import io
from onnxcompress.cli import main
from onnxcompress.errors import UsageError

DEEPEST_READABLE = 31
COMMANDS = {
    "inspect": lambda model, out: ["inspect", model],
    "run": lambda model, out: ["run", model, "-o", out / "out.onnx", "-p", "fold-constants", "-p", "cleanup",
                               "-p", "fuse", "--no-bench"],
    "bench": lambda model, out: ["bench", model, "--rounds", "1"],
    "verify": lambda model, out: ["verify", model, model],
    "compare": lambda model, out: ["compare", model, "-r", "cleanup", "--rounds", "1"],
    "recommend": lambda model, out: ["recommend", model],
}


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


def nested_if_model(path, depth: int) -> str:
    """``y = x`` under ``depth`` nested If nodes, written as raw protobuf: Python protobuf cannot hold it past ~33."""
    inputs = helper.make_graph([], "main", [_vector("x"), _vector("c", TensorProto.BOOL)], []).SerializeToString()
    model = helper.make_model(helper.make_graph([], "main", [], []), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.ClearField("graph")
    path.write_bytes(model.SerializeToString() + _field(7, _branch(depth, "r") + inputs))  # ModelProto.graph
    return str(path)


def test_the_builder_makes_what_ort_runs(tmp_path):
    session = ort.InferenceSession(nested_if_model(tmp_path / "m.onnx", DEEPEST_READABLE))
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    assert np.array_equal(session.run(None, {"x": x, "c": np.array(True)})[0], x)
    assert np.array_equal(session.run(None, {"x": x, "c": np.array(False)})[0], -x)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_deepest_readable_nesting_goes_through_every_command(command, tmp_path, capsys):
    model = nested_if_model(tmp_path / "m.onnx", DEEPEST_READABLE)
    before = hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest()
    code = main([str(a) for a in COMMANDS[command](model, tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest() == before
    if command == "run":
        assert len(io.load(tmp_path / "out.onnx").graph) == 1


@pytest.mark.parametrize("depth", [DEEPEST_READABLE + 1, 50, 500])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_deeper_nesting_is_one_line_from_every_command(command, depth, tmp_path, capsys):
    model = nested_if_model(tmp_path / "m.onnx", depth)
    code = main([str(a) for a in COMMANDS[command](model, tmp_path)])
    assert (code, capsys.readouterr().err) == (2, f"error: {model}: {io.NESTED_TOO_DEEP}\n")
    assert not (tmp_path / "out.onnx").exists()


def test_deeper_nesting_is_a_usage_error_from_the_api(tmp_path):
    with pytest.raises(UsageError, match="nested deeper"):
        io.load(nested_if_model(tmp_path / "m.onnx", 500))
