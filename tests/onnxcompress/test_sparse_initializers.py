"""Sparse initializers load as the dense initializers they stand for, their external data under the usual rules."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

from onnxcompress import io, runtime, sparse_initializers
from onnxcompress.errors import UsageError

DENSE = np.array([[0, 2, 0], [0, 0, 0], [-1, 0, 0], [0, 0, 5]], np.float32)


def sparse_matmul(folder, *, coordinates: bool = False, location: str | None = None, dims=(4, 3)):
    """``y = x @ W`` with ``W`` stored sparse (linear or ``[NNZ, 2]`` indices; values in ``location`` if given)."""
    flat = np.flatnonzero(DENSE)
    values = numpy_helper.from_array(DENSE.reshape(-1)[flat], "W")
    indices = np.stack(np.unravel_index(flat, DENSE.shape), axis=1) if coordinates else flat
    if location is not None:
        (folder / location).parent.mkdir(parents=True, exist_ok=True)
        (folder / location).write_bytes(values.raw_data)
        values.data_location = onnx.TensorProto.EXTERNAL
        values.ClearField("raw_data")
        values.external_data.add(key="location", value=location)
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(indices.astype(np.int64), "W_indices"), list(dims))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])], sparse_initializer=[sparse])
    path = folder / "sparse.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("coordinates", [False, True], ids=["linear", "coordinates"])
def test_a_sparse_initializer_loads_dense_and_the_model_computes_with_it(tmp_path, coordinates):
    model = io.load(sparse_matmul(tmp_path, coordinates=coordinates))
    np.testing.assert_array_equal(model.graph.initializers["W"].const_value.numpy(), DENSE)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(runtime.run(model, {"x": x})["y"], x @ DENSE)


def test_its_external_values_are_read_from_inside_the_folder(tmp_path):
    model = io.load(sparse_matmul(tmp_path, location="data/W.bin"))
    np.testing.assert_array_equal(model.graph.initializers["W"].const_value.numpy(), DENSE)


def test_external_values_outside_the_folder_are_refused_unread(tmp_path):
    inner = tmp_path / "model"
    inner.mkdir()
    path = sparse_matmul(inner, location="../outside.bin")
    with pytest.raises(UsageError, match=r"^external data location '\.\./outside\.bin' of tensor 'W' escapes the model's folder$"):
        io.load(path)


def test_dims_too_large_for_memory_are_refused_before_anything_is_allocated(tmp_path):
    with pytest.raises(UsageError, match=r"^sparse initializer 'W': dense dims \[4000000, 3000000\] would take .* bytes, over the"):
        io.load(sparse_matmul(tmp_path, dims=(4_000_000, 3_000_000)))


def test_indices_outside_the_dims_are_refused(tmp_path):
    with pytest.raises(UsageError, match=r"^sparse initializer 'W': .* do not fit dims \[2, 3\]$"):
        io.load(sparse_matmul(tmp_path, dims=(2, 3)))


def test_subgraphs_are_walked_too(tmp_path):
    proto = onnx.load(str(sparse_matmul(tmp_path)))
    branch = helper.make_graph([], "b", [], [helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, None)],
                               sparse_initializer=[proto.graph.sparse_initializer[0]])
    proto.graph.node.append(helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch))
    assert [g.name for g in sparse_initializers.graphs(proto)] == ["g", "b", "b"]
    assert sparse_initializers.densify(proto, tmp_path, 10**6) == ["W", "W", "W"]
    assert not any(g.sparse_initializer for g in sparse_initializers.graphs(proto))


def test_run_writes_it_sparse_again_with_the_same_values(tmp_path, capsys):
    from onnxcompress.cli import main

    source = sparse_matmul(tmp_path)
    assert main(["run", str(source), "-o", str(tmp_path / "out.onnx"), "-p", "fold-constants", "-p", "cleanup", "--no-bench"]) == 0
    out = onnx.load(str(tmp_path / "out.onnx"))
    assert [t.values.name for t in out.graph.sparse_initializer] == ["W"] and not out.graph.initializer
    np.testing.assert_array_equal(io.load(tmp_path / "out.onnx").graph.initializers["W"].const_value.numpy(), DENSE)
    assert (tmp_path / "out.onnx").stat().st_size <= source.stat().st_size + 64  # names and metadata, not a dense W


def test_a_tensor_a_pass_made_mostly_nonzero_is_saved_dense(tmp_path):
    model = io.load(sparse_matmul(tmp_path))
    model.graph.initializers["W"].const_value = ir.tensor(np.ones((4, 3), np.float32), name="W")
    io.save(model, tmp_path / "out.onnx")
    out = onnx.load(str(tmp_path / "out.onnx"))
    assert not out.graph.sparse_initializer and [t.name for t in out.graph.initializer] == ["W"]


@pytest.mark.parametrize("argv", [["run", "{m}", "-o", "{o}", "-p", "cleanup", "--no-bench"], ["verify", "{m}", "{m}"],
                                  ["compare", "{m}", "-r", "cleanup"], ["inspect", "{m}"]], ids=["run", "verify", "compare", "inspect"])
def test_every_command_reads_it_without_a_stray_warning(tmp_path, argv, capsys):
    from onnxcompress.cli import main

    path = sparse_matmul(tmp_path)
    before = path.read_bytes()
    code = main([a.format(m=path, o=tmp_path / "out.onnx") for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "cannot be found in any scope" not in captured.err + captured.out
    assert path.read_bytes() == before
