"""Exact rewrites of PyTorch's ``nn.MultiheadAttention`` export into the layout the pruning rules follow.

PyTorch writes attention in forms whose head axis no per-op rule can follow:

- the packed ``in_proj`` (one ``[E, 3E]`` MatMul, reshaped to ``[.., 3, E]`` and split by
  Unsqueeze → Transpose → Squeeze → Gather): becomes three projections, one per Gather;
- the sequence-first head split ``Reshape(q, [S, B·N, H])`` → ``Transpose(1, 0, 2)`` →
  ``Reshape([B, N, S, H])``, whose head axis hides inside a run-time ``B·N`` axis: becomes
  ``Transpose(Reshape(q, [0, 0, N, H]), [1, 2, 0, 3])``;
- the dynamo export's Kᵀ (flatten → Transpose → unflatten): becomes ``Transpose(K, [0, 1, 3, 2])``;
- the key-padding mask copied to every head (``Expand`` to ``[B, N, 1, S]`` through a ``B·N`` axis)
  and added to the scores: the scores' Add reads the mask before the copy and broadcasts it.

Each rewrite moves the same numbers (no arithmetic changes order), and is proved on the shapes of
the two probe runs (``dependencies.infer_shapes``): a ``B·N`` axis must be ``B`` times ``N`` in both.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxcompress.passes.fusion.attention_heads import unflattened_keys
from onnxcompress.passes.pruning.graph import PROBED
from onnxcompress.passes.pruning.rules.constants import fresh_name, replace_input_with_constant
from onnxcompress.passes.values import constant, input_at, rank_or_zero

PACKED = 3  # Q, K and V in one projection
PACKED_SPLIT = (3, 1, 2, 0, 4)
HEADS_FROM_SEQUENCE_FIRST = (1, 2, 0, 3)
KEYS_TRANSPOSED = (0, 1, 3, 2)


def normalise_attention(model: ir.Model) -> int:
    """Apply every rewrite where its form is proved; return how many were made."""
    graph = model.graph
    slices: dict[tuple[bytes, int], ir.Value] = {}
    count = sum(_unpack(graph, node, slices) for node in list(graph) if node.op_type == "Squeeze")
    count += sum(_split_batch_first(graph, node) for node in list(graph) if node.op_type == "Reshape" and node.graph is graph)
    count += sum(_transpose_keys(graph, node) for node in list(graph) if node.op_type == "Reshape" and node.graph is graph)
    count += sum(_broadcast_mask(node) for node in list(graph) if node.op_type == "Expand")
    if count:
        RemoveUnusedNodesPass()(model)
    return count


def _probes(value: ir.Value | None) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    return None if value is None else value.meta.get(PROBED)


def _only_use(value: ir.Value, op_type: str) -> ir.Node | None:
    users = list(value.uses())
    if len(users) != 1 or users[0].node.op_type != op_type or value.is_graph_output():
        return None
    return users[0].node


def _producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == op_type else None


def _axes(node: ir.Node, node_rank: int) -> list[int] | None:
    given = constant(input_at(node, 1))
    axes = given.ravel().tolist() if given is not None else node.attributes.get_ints("axes", None)
    return None if axes is None or node_rank == 0 else sorted(int(a) % node_rank for a in axes)


def _perm(node: ir.Node | None) -> tuple[int, ...] | None:
    return None if node is None else tuple(node.attributes.get_ints("perm", ()) or ())


def _new_node(graph: ir.Graph, before: ir.Node, op_type: str, inputs: list, shape, dtype, **attributes) -> ir.Value:
    """Insert ``op_type(inputs)`` before ``before``; its output gets ``shape`` and ``dtype``."""
    name = fresh_name(before, op_type.lower())
    output = ir.Value(name=name, shape=ir.Shape(shape), type=ir.TensorType(dtype))
    attrs = [ir.AttrInt64s(key, list(value)) for key, value in attributes.items()]
    node = ir.Node("", op_type, inputs, attributes=attrs, outputs=[output], name=name)
    graph.insert_before(before, node)
    return output


def _initializer(graph: ir.Graph, near: ir.Node, stem: str, array: np.ndarray) -> ir.Value:
    name = fresh_name(near, stem)
    tensor = ir.tensor(np.ascontiguousarray(array), name=name)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


def _unpack(graph: ir.Graph, squeeze: ir.Node, slices: dict[tuple[bytes, int], ir.Value]) -> bool:
    """Replace each ``Gather(k)`` of a packed projection by its own ``x @ W[:, kE:(k+1)E] (+ b[kE:(k+1)E])``.

    Equal slices (layers deep-copied from one template, whose copies the exporter shared) share one
    initializer in ``slices``, so their heads are pruned alike and the model does not grow by untying."""
    packed = _packed_projection(squeeze)
    if packed is None:
        return False
    x, weight, bias, width = packed
    gathers = [use.node for use in squeeze.outputs[0].uses()]
    indices = [_selected(node) for node in gathers]
    if not gathers or None in indices or any(node.outputs[0].is_graph_output() for node in gathers):
        return False
    for gather, k in zip(gathers, indices):
        out = gather.outputs[0]
        part = slice(k * width, (k + 1) * width)
        w = _shared_slice(graph, gather, slices, f"q_k_v{k}_weight", weight[:, part])
        y = _new_node(graph, gather, "MatMul", [x, w], out.shape, out.dtype)
        if bias is not None:
            b = _shared_slice(graph, gather, slices, f"q_k_v{k}_bias", bias[part])
            y = _new_node(graph, gather, "Add", [y, b], out.shape, out.dtype)
        y.meta[PROBED] = out.meta.get(PROBED)
        out.replace_all_uses_with(y)
    return True


def _shared_slice(graph: ir.Graph, near: ir.Node, slices: dict[tuple[bytes, int], ir.Value], stem: str,
                  array: np.ndarray) -> ir.Value:
    key = (hashlib.sha256(np.ascontiguousarray(array).tobytes()).digest() + str(array.shape).encode(), array.ndim)
    if key not in slices:
        slices[key] = _initializer(graph, near, stem, array)
    return slices[key]


def _packed_projection(squeeze: ir.Node) -> tuple[ir.Value, np.ndarray, np.ndarray | None, int] | None:
    """(x, W, b, E) when ``squeeze`` ends ``Reshape(x @ W + b, [.., 3, E])`` → Unsqueeze(0) → Transpose → Squeeze."""
    transpose = _producer(squeeze.inputs[0], "Transpose")
    unsqueeze = _producer(transpose.inputs[0], "Unsqueeze") if transpose is not None else None
    reshape = _producer(unsqueeze.inputs[0], "Reshape") if unsqueeze is not None else None
    if reshape is None or _perm(transpose) != PACKED_SPLIT or _axes(unsqueeze, rank_or_zero(unsqueeze.outputs[0])) != [0] \
            or _axes(squeeze, rank_or_zero(squeeze.inputs[0])) != [3]:
        return None
    if any(_only_use(node.outputs[0], after) is None
           for node, after in ((reshape, "Unsqueeze"), (unsqueeze, "Transpose"), (transpose, "Squeeze"))):
        return None
    linear, split = reshape.inputs[0], reshape.outputs[0]
    if rank_or_zero(split) != rank_or_zero(linear) + 1 or rank_or_zero(linear) < 2 or split.shape[-2] != PACKED or not isinstance(split.shape[-1], int):
        return None
    width = split.shape[-1]
    if linear.shape[-1] != PACKED * width or not _same_leading(linear, split, rank_or_zero(linear) - 1):
        return None
    return _affine(linear, PACKED * width, width)


def _affine(linear: ir.Value, features: int, width: int) -> tuple[ir.Value, np.ndarray, np.ndarray | None, int] | None:
    """(x, W, b, width) when ``linear`` is ``x @ W (+ b)`` with constant ``W [D, features]`` and ``b [features]``."""
    bias = None
    node = linear.producer()
    if node is not None and node.op_type == "Add":
        for product, offset in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
            b = constant(offset)
            if b is not None and b.shape == (features,) and _producer(product, "MatMul") is not None:
                bias, node = b, product.producer()
                break
    if node is None or node.op_type != "MatMul":
        return None
    weight = constant(node.inputs[1])
    if weight is None or weight.ndim != 2 or weight.shape[1] != features:
        return None
    return node.inputs[0], weight, bias, width


def _same_leading(a: ir.Value, b: ir.Value, count: int) -> bool:
    """Whether the first ``count`` dims of ``a`` and ``b`` were equal in both probe runs."""
    pa, pb = _probes(a), _probes(b)
    return pa is not None and pb is not None and all(x[:count] == y[:count] for x, y in zip(pa, pb))


def _selected(gather: ir.Node) -> int | None:
    """The scalar index a ``Gather`` on axis 0 selects among the packed projections."""
    index = constant(gather.inputs[1]) if gather.op_type == "Gather" else None
    if index is None or index.ndim != 0 or gather.attributes.get_int("axis", 0) != 0 or not 0 <= int(index) < PACKED:
        return None
    return int(index)


def _split_batch_first(graph: ir.Graph, merge: ir.Node) -> bool:
    """``Reshape(Transpose(Reshape(q, [S, B·N, H]), [1, 0, 2]), [B, N, S, H])`` → ``Transpose(Reshape(q, [0, 0, N, H]), [1, 2, 0, 3])``."""
    swap = _producer(merge.inputs[0], "Transpose")
    split = _producer(swap.inputs[0], "Reshape") if swap is not None else None
    if split is None or _perm(swap) != (1, 0, 2) or _only_use(split.outputs[0], "Transpose") is None:
        return False
    length_reads = [use.node for use in swap.outputs[0].uses() if use.node is not merge]
    if swap.outputs[0].is_graph_output() or not all(_reads_trailing_dims(node) for node in length_reads):
        return False
    q, heads_out = split.inputs[0], merge.outputs[0]
    if rank_or_zero(q) != 3 or rank_or_zero(heads_out) != 4:
        return False
    heads, head_size = heads_out.shape[1], heads_out.shape[3]
    if not isinstance(heads, int) or not isinstance(head_size, int) or q.shape[-1] != heads * head_size:
        return False
    pq, ps, pm = _probes(q), _probes(split.outputs[0]), _probes(heads_out)
    if pq is None or ps is None or pm is None:
        return False
    for (s, b, _), flat, out in zip(pq, ps, pm):
        if flat != (s, b * heads, head_size) or out != (b, heads, s, head_size):
            return False
    target = _initializer(graph, merge, "heads_shape", np.array([0, 0, heads, head_size], dtype=np.int64))
    reshaped = _new_node(graph, merge, "Reshape", [q, target], [q.shape[0], q.shape[1], heads, head_size], q.dtype)
    reshaped.meta[PROBED] = tuple((s, b, heads, head_size) for s, b, _ in pq)
    moved = _new_node(graph, merge, "Transpose", [reshaped], heads_out.shape, q.dtype, perm=HEADS_FROM_SEQUENCE_FIRST)
    moved.meta[PROBED] = pm
    heads_out.replace_all_uses_with(moved)
    for shape in length_reads:  # [B·N, S, H] dims 1 and 2 are dims 2 and 3 of [B, N, S, H]
        shape.replace_input_with(0, moved)
        for use in list(shape.outputs[0].uses()):
            index = int(constant(use.node.inputs[1]))
            replace_input_with_constant(use.node, 1, np.array(index % 3 + 1, dtype=np.int64), fresh_name(use.node, "heads_dim"))
    return True


def _reads_trailing_dims(node: ir.Node) -> bool:
    """A ``Shape`` of a ``[B·N, S, H]`` tensor whose every use is a ``Gather`` of dim 1 or 2 (the legacy export's key length)."""
    if node.op_type != "Shape" or node.attributes or node.outputs[0].is_graph_output():
        return False
    for use in node.outputs[0].uses():
        index = constant(use.node.inputs[1]) if use.node.op_type == "Gather" and use.idx == 0 else None
        if index is None or index.ndim != 0 or use.node.attributes.get_int("axis", 0) != 0 or int(index) % 3 == 0:
            return False
    return True


def _transpose_keys(graph: ir.Graph, unflatten: ir.Node) -> bool:
    """The dynamo export's flatten → Transpose → unflatten Kᵀ → one ``Transpose(K, [0, 1, 3, 2])``."""
    found = unflattened_keys(unflatten)
    out = unflatten.outputs[0]
    if found is None or out.is_graph_output():
        return False
    keys = found[0]
    shape = [keys.shape[i] for i in KEYS_TRANSPOSED]
    moved = _new_node(graph, unflatten, "Transpose", [keys], shape, keys.dtype, perm=KEYS_TRANSPOSED)
    probes = _probes(keys)
    if probes is not None:
        moved.meta[PROBED] = tuple(tuple(p[i] for i in KEYS_TRANSPOSED) for p in probes)
    out.replace_all_uses_with(moved)
    return True


def _broadcast_mask(expand: ir.Node) -> bool:
    """Adds of a mask ``Expand``-ed to every head (``[B, 1, 1, S]`` → ``[B·N, 1, S]`` → ``[B, N, 1, S]``) read it unexpanded."""
    mask = expand.inputs[0]
    flat = _only_use(expand.outputs[0], "Reshape")
    heads_out = _only_use(flat.outputs[0], "Reshape") if flat is not None else None
    if heads_out is None or rank_or_zero(mask) != 4 or not isinstance(heads_out.outputs[0].shape[1], int):
        return False
    heads = heads_out.outputs[0].shape[1]
    pm, px, pf, pe = (_probes(v) for v in (mask, expand.outputs[0], flat.outputs[0], heads_out.outputs[0]))
    if None in (pm, px, pf, pe) or any(
            m[1:3] != (1, 1) or x != (m[0], heads, 1, m[3]) or f != (m[0] * heads, 1, m[3]) or e != x
            for m, x, f, e in zip(pm, px, pf, pe)):
        return False
    expanded = heads_out.outputs[0]
    adds = [use for use in expanded.uses() if use.node.op_type == "Add" and _covers_heads(use.node, use.idx, heads)]
    for use in adds:
        use.node.replace_input_with(use.idx, mask)
    return bool(adds)


def _covers_heads(add: ir.Node, index: int, heads: int) -> bool:
    """Whether the Add's other operand is rank 4 with ``heads`` on axis 1, so the mask still broadcasts to its shape."""
    other = add.inputs[1 - index]
    return rank_or_zero(other) == 4 and other.shape[1] == heads
