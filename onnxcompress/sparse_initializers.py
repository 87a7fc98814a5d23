"""Sparse initializers, made dense when a model is loaded.

ONNX lets a graph store an initializer as a ``SparseTensorProto`` (values, their indices, the dense
dims). The IR library and every pass read dense initializers only, and the IR library drops sparse
ones with a warning, so a model with one was misread; loading turns each into the dense initializer
of the same name. Its values and indices may live in external data, checked by ``io`` under the same
rules as dense tensors before anything is read; the dense size is checked against a byte budget
first, so a small file declaring huge dims cannot take the machine's memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnxcompress.errors import UsageError


def graphs(proto: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """The main graph and every subgraph (If/Loop/Scan bodies), walked without recursion."""
    pending = [proto.graph]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                pending.extend([attribute.g] if attribute.HasField("g") else [])
                pending.extend(attribute.graphs)


def sparse_tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """The value and index tensors of every sparse initializer (what may point at external data)."""
    for graph in graphs(proto):
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices


def densify(proto: onnx.ModelProto, folder: Path, budget: int) -> int:
    """Replace every sparse initializer of ``proto`` by its dense initializer (external data read from
    ``folder``); returns how many. A one-line ``UsageError`` for dense sizes over ``budget`` bytes and for
    indices outside the dims."""
    count = 0
    for graph in graphs(proto):
        for sparse in graph.sparse_initializer:
            graph.initializer.append(numpy_helper.from_array(dense_array(sparse, folder, budget), sparse.values.name))
            count += 1
        del graph.sparse_initializer[:]
    return count


def dense_array(sparse: onnx.SparseTensorProto, folder: Path, budget: int) -> np.ndarray:
    """The dense value of one sparse initializer."""
    name, dims = sparse.values.name, tuple(int(d) for d in sparse.dims)
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(sparse.values.data_type).itemsize
    elements = int(np.prod(dims, dtype=object))
    if min(dims, default=0) < 0 or elements * itemsize > budget:
        raise UsageError(f"sparse initializer {name!r}: dense dims {list(dims)} would take {elements * itemsize:,} bytes, "
                         f"over the {budget:,}-byte budget")
    values = numpy_helper.to_array(sparse.values, base_dir=str(folder)).reshape(-1)
    indices = numpy_helper.to_array(sparse.indices, base_dir=str(folder)).astype(np.int64)
    linear = indices.reshape(-1) if indices.ndim == 1 else _linear(indices, dims, name)
    if len(linear) != len(values) or (len(linear) and (linear.min() < 0 or linear.max() >= elements)):
        raise UsageError(f"sparse initializer {name!r}: {len(values)} values and {len(linear)} indices do not fit dims {list(dims)}")
    dense = np.zeros(elements, dtype=values.dtype)
    dense[linear] = values
    return dense.reshape(dims)


def _linear(indices: np.ndarray, dims: tuple[int, ...], name: str) -> np.ndarray:
    """``[NNZ, rank]`` coordinates as linear indices."""
    if indices.ndim != 2 or indices.shape[1] != len(dims) or (indices < 0).any() or (indices >= np.array(dims)).any():
        raise UsageError(f"sparse initializer {name!r}: indices of shape {list(indices.shape)} do not fit dims {list(dims)}")
    return np.ravel_multi_index(tuple(indices.T), dims).astype(np.int64)
