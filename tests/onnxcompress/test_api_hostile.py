"""The Python API answers hostile input as the CLI does: an ``OnnxCompressError`` (here a one-line
``UsageError``) from ``load``, ``run``/``Pipeline.run``, ``verify_models`` and ``assert_models_close``,
never a raw ``ValueError``/``MemoryError``/ORT error, and the input file unchanged."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxcompress
from onnxcompress import io, testing, verify
from onnxcompress.errors import UsageError

CALLS = {
    "load": lambda path: io.load(path),
    "run-exact": lambda path: onnxcompress.run(path, ["fold-constants", "cleanup", "fuse"]),
    "run-int8": lambda path: onnxcompress.run(path, ["quantize-dynamic"]),
    "verify_models": lambda path: verify.verify_models(io.load(path), io.load(path)),
    "assert_models_close": lambda path: testing.assert_models_close(path, path),
}


def _save(path, nodes, inputs, outputs, initializers=(), **save_options) -> str:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path, **save_options)
    return str(path)


def identity(path, shape) -> str:
    """``y = x`` for a float input of ``shape``."""
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "xy")
    return _save(path, [helper.make_node("Identity", ["x"], ["y"])], [x], [y])


def runtime_expand(path) -> str:
    """An 8 GB Expand fed by the graph input, so no pass can fold it: only running the model allocates it."""
    shape = numpy_helper.from_array(np.array([2, 10**9], np.int64), "s")
    nodes = [helper.make_node("Expand", ["x", "s"], ["big"]), helper.make_node("ReduceSum", ["big"], ["y"], keepdims=0)]
    return _save(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [shape])


def external_matmul(path, location: str = "w.bin") -> str:
    """``y = x @ W`` with ``W`` in the external file ``location``."""
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "xy")
    return _save(path, [helper.make_node("MatMul", ["x", "W"], ["y"])], [x], [y], [weight],
                 save_as_external_data=True, location=location, size_threshold=0)


def hard_linked(path) -> str:
    """External data whose file has a second hard link (a link can bring in a file from anywhere)."""
    model = external_matmul(path)
    os.link(path.parent / "w.bin", path.parent / "elsewhere.bin")
    return model


def nul_location(path) -> str:
    """An external location holding a NUL character (Python's path functions raise a raw ValueError)."""
    model = external_matmul(path)
    proto = onnx.load(model, load_external_data=False)
    entry = next(e for e in proto.graph.initializer[0].external_data if e.key == "location")
    entry.value = "w\0.bin"
    onnx.save(proto, model)
    return model


CASES = {  # name: (builder, what the one line says, whether the file itself is a valid model that loads)
    "rank-40 dynamic input": (lambda p: identity(p, [f"d{i}" for i in range(40)]), "synthetic input 'x' of shape", True),
    "40 GB synthetic input": (lambda p: identity(p, [10**10]), "takes the inputs to 40.0 GB", True),
    "8 GB at run time": (runtime_expand, "not enough memory to run the model", True),
    "hard-linked data": (hard_linked, "is one of 2 hard links", False),
    "NUL in a location": (nul_location, "holds a NUL character", False),
}


def digest(folder) -> dict[str, str]:
    """Hash of every regular file under ``folder``."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_a_one_line_usage_error(call, case, tmp_path, capped_address_space):
    build, message, loads = CASES[case]
    model = build(tmp_path / "m.onnx")
    before = digest(tmp_path)
    if call == "load" and loads:
        assert len(io.load(model).graph) > 0  # a valid file: only running the model is beyond the machine
    else:
        with pytest.raises(UsageError) as raised:
            CALLS[call](model)
        assert message in str(raised.value) and "\n" not in str(raised.value)
    assert digest(tmp_path) == before


@pytest.mark.parametrize("call", sorted(CALLS))
def test_nesting_past_protobufs_limit_is_a_usage_error(call, nested_if_model, tmp_path):
    model = nested_if_model(tmp_path / "m.onnx", 500)
    with pytest.raises(UsageError, match="nested deeper than protobuf's parse limit"):
        CALLS[call](model)
