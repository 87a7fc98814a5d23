"""Ops that move, select or make values without arithmetic: shapes, indexing, slicing, joining, casting."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import torch

from onnxcompress.passes.training.torch_ops.attributes import attr_int, attr_ints, axes_of, int_values, positive_axis
from onnxcompress.passes.training.torch_ops.tensors import DTYPES
from onnxcompress.passes.training.untrainable import untrainable


def reshape(node, opset, x, shape):
    """Reshape (0 copies the input's dim unless ``allowzero``; -1 is inferred)."""
    dims = int_values(shape)
    if not attr_int(node, "allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def flatten(node, opset, x):
    """Flatten into ``[prod(dims before axis), prod(dims from axis)]``."""
    axis = positive_axis(attr_int(node, "axis", 1), x.dim())
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def transpose(node, opset, x):
    """Transpose by ``perm`` (reversed when absent)."""
    return x.permute(attr_ints(node, "perm", list(reversed(range(x.dim())))))


def unsqueeze(node, opset, x, axes=None):
    """Unsqueeze at the given axes (attribute before opset 13, input from it)."""
    wanted = axes_of(node, opset, axes, 13)
    rank = x.dim() + len(wanted)
    for axis in sorted(positive_axis(a, rank) for a in wanted):
        x = x.unsqueeze(axis)
    return x


def squeeze(node, opset, x, axes=None):
    """Squeeze the given axes, or every axis of size 1 when none is given."""
    wanted = axes_of(node, opset, axes, 13)
    if wanted is None:
        return x.squeeze()
    for axis in sorted((positive_axis(a, x.dim()) for a in wanted), reverse=True):
        x = x.squeeze(axis)
    return x


def gather(node, opset, data, indices):
    """Gather along ``axis``; negative indices count from the end."""
    axis = positive_axis(attr_int(node, "axis", 0), data.dim())
    index = indices.long()
    index = torch.where(index < 0, index + data.shape[axis], index)
    picked = data.index_select(axis, index.reshape(-1))
    return picked.reshape((*data.shape[:axis], *index.shape, *data.shape[axis + 1:]))


def gather_nd(node, opset, data, indices):
    """GatherND without batch dims (declined with them)."""
    if attr_int(node, "batch_dims", 0):
        raise untrainable("GatherND with batch_dims is not supported")
    index = indices.long()
    return data[tuple(index[..., i] for i in range(index.shape[-1]))]


def slice_(node, opset, data, starts=None, ends=None, axes=None, steps=None):
    """Slice by starts, ends, axes and steps (attributes before opset 10, inputs from it)."""
    if opset < 10:
        starts, ends, axes = attr_ints(node, "starts"), attr_ints(node, "ends"), attr_ints(node, "axes", None)
        steps = None
    else:
        starts, ends, axes, steps = int_values(starts), int_values(ends), int_values(axes), int_values(steps)
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = positive_axis(axis, data.dim())
        kept = range(*slice(start, end, step).indices(data.shape[axis]))
        data = data.index_select(axis, torch.tensor(kept, dtype=torch.int64))
    return data


def split(node, opset, x, sizes=None):
    """Split along ``axis`` into the given sizes, or into equal parts."""
    axis = positive_axis(attr_int(node, "axis", 0), x.dim())
    parts = int_values(sizes) if opset >= 13 else attr_ints(node, "split", None)
    if parts is None:
        count = len(node.outputs)
        chunk = -(-x.shape[axis] // count)
        parts = [min(chunk, x.shape[axis] - i * chunk) for i in range(count)]
    return tuple(torch.split(x, parts, dim=axis))


def concat(node, opset, *xs):
    """Concat along ``axis``."""
    return torch.cat([x for x in xs if x is not None], dim=attr_int(node, "axis", 0))


def cast(node, opset, x):
    """Cast to ``to`` (a type torch has none of is declined)."""
    target = ir.DataType(attr_int(node, "to", 1))
    if target not in DTYPES:
        raise untrainable(f"Cast to {target.name} is not supported")
    return x.to(DTYPES[target])


def expand(node, opset, x, shape):
    """Expand by ONNX's two-way broadcast to ``shape``."""
    return x.expand(torch.broadcast_shapes(x.shape, tuple(int_values(shape))))


def tile(node, opset, x, repeats):
    """Tile by ``repeats``."""
    return x.repeat(int_values(repeats))


def constant_of_shape(node, opset, shape):
    """ConstantOfShape: ``shape`` filled with ``value`` (0.0 when absent)."""
    value = node.attributes.get("value")
    array = value.as_tensor().numpy() if value is not None else np.zeros(1, np.float32)
    return torch.full(tuple(int_values(shape)), array.reshape(-1)[0].item(), dtype=DTYPES[ir.DataType.from_numpy(array.dtype)])


def range_(node, opset, start, limit, delta):
    """Range from ``start`` to ``limit`` by ``delta``."""
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def shape(node, opset, x):
    """Shape, or its ``start:end`` slice."""
    dims = torch.tensor(list(x.shape), dtype=torch.int64)
    start, end = attr_int(node, "start", 0), node.attributes.get_int("end", None)
    return dims[start:end]


def trilu(node, opset, x, k=None):
    """Trilu: the upper or lower triangle from diagonal ``k``."""
    offset = int(k.item()) if k is not None else 0
    return torch.triu(x, offset) if attr_int(node, "upper", 1) else torch.tril(x, offset)


def where(node, opset, condition, a, b):
    """Where: elements of ``a`` where ``condition`` holds, else of ``b``."""
    return torch.where(condition.bool(), a, b)
