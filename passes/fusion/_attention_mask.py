"""The additive mask of a fused ``Attention`` node in the form ORT's CPU kernel accepts.

ORT's kernel wants the mask's last two axes spelled out as the query and the key lengths. A mask
whose query axis is broadcast (``[B, 1, 1, S]``, legal in the spec) it rejects; one whose key axis
is broadcast (a scalar bias, ``[1, 1, L, 1]``) it rejects at opset 23 and 24 and (ORT 1.32) reads wrongly
without an error at 25 and 26 (onnx's ``test_flexattention_score_mod`` adds a scalar to the
scores). So unless shapes prove both lengths, the mask is expanded to them in the graph; blocks
whose queries and keys provably have the same lengths share one expanded mask.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.values import constant, same_dim


def mask_for_ort(op, mask: ir.Value, q: ir.Value, keys: ir.Value, sequence_axis: int) -> ir.Value:
    """``mask`` at rank 4 with its query and key axes spelled out (the lengths of ``q``'s and ``keys``'
    ``sequence_axis``) unless shapes prove they are."""
    query_length, key_length = _length(q, sequence_axis), _length(keys, sequence_axis)
    if len(mask.shape) >= 2 and same_dim(mask.shape[-2], query_length) and same_dim(mask.shape[-1], key_length):
        return mask
    shared = _expanded_for(mask, query_length, key_length, sequence_axis)
    if shared is not None:
        return shared
    ones = op.initializer(ir.tensor(np.array([1, 1], dtype=np.int64)), name=f"{q.name}_mask_lead")
    lengths = [op.Shape(x, start=sequence_axis, end=sequence_axis + 1) for x in (q, keys)]
    return op.Expand(mask, op.Concat(ones, *lengths, axis=0))


def fits_scores(mask: ir.Value, scores: list[int | ir.SymbolicDim | None]) -> bool:
    """Whether ``mask`` may be added to scores of shape ``scores`` (``[B, N, L, S]``) without provably
    broadcasting them to a larger shape, which the fused op's output would not have."""
    return not any(isinstance(dim, int) and dim > 1 and isinstance(target, int) and dim != target
                   for dim, target in zip(reversed(mask.shape), reversed(scores)))


def _length(x: ir.Value, axis: int) -> int | ir.SymbolicDim | None:
    return x.shape[axis] if x.shape is not None and len(x.shape) > axis else None


def _expanded_for(mask: ir.Value, query_length: int | ir.SymbolicDim | None, key_length: int | ir.SymbolicDim | None,
                  axis: int) -> ir.Value | None:
    """An ``Expand`` of ``mask`` to ``[1, 1, L, S]`` an earlier rewrite made for queries and keys of the same (provable) lengths."""
    for user, _ in mask.uses():
        target = user.inputs[1].producer() if user.op_type == "Expand" and len(user.inputs) > 1 else None
        if target is None or target.op_type != "Concat" or len(target.inputs) != 3:
            continue
        lead, query, key = target.inputs
        if (_ints(lead) == [1, 1] and same_dim(_read_length(query, axis), query_length)
                and same_dim(_read_length(key, axis), key_length)):
            return user.outputs[0]
    return None


def _read_length(value: ir.Value, axis: int) -> int | ir.SymbolicDim | None:
    """The dimension that ``value`` = ``Shape(x, start=axis, end=axis + 1)`` reads, when ``x``'s shape shows it."""
    source = value.producer()
    if (source is None or source.op_type != "Shape" or source.attributes.get_int("start", 0) != axis
            or source.attributes.get_int("end", 0) != axis + 1):
        return None
    return _length(source.inputs[0], axis)


def _ints(value: ir.Value | None) -> list[int] | None:
    array = constant(value)
    return None if array is None else [int(x) for x in array.ravel()]
