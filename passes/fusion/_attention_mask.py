"""The additive mask of a fused ``Attention`` node in the form ORT's CPU kernel accepts.

ORT's kernel rejects a mask whose query axis is broadcast (``[B, 1, 1, S]``, legal in the spec), so
unless shapes prove the mask spells it out, the mask is expanded to the query length in the graph;
blocks whose queries provably have one length share one expanded mask.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcompress.passes.fusion._values import constant, same_dim


def mask_for_ort(op, mask: ir.Value, q: ir.Value, query_axis: int) -> ir.Value:
    """``mask`` at rank 4 with its query axis spelled out (the length of ``q``'s ``query_axis``) unless shapes prove it is."""
    query_length = q.shape[query_axis] if q.shape is not None and len(q.shape) > query_axis else None
    if len(mask.shape) >= 2 and same_dim(mask.shape[-2], query_length):
        return mask
    shared = _expanded_for(mask, query_length, query_axis)
    if shared is not None:
        return shared
    ones = op.initializer(ir.tensor(np.array([1, 1], dtype=np.int64)), name=f"{q.name}_mask_lead")
    one = op.initializer(ir.tensor(np.array([1], dtype=np.int64)), name=f"{q.name}_mask_key")
    return op.Expand(mask, op.Concat(ones, op.Shape(q, start=query_axis, end=query_axis + 1), one, axis=0))


def _expanded_for(mask: ir.Value, query_length: int | ir.SymbolicDim | None, query_axis: int) -> ir.Value | None:
    """An ``Expand`` of ``mask`` to ``[1, 1, S, 1]`` an earlier rewrite made for queries of the same (provable) length."""
    for user, _ in mask.uses():
        target = user.inputs[1].producer() if user.op_type == "Expand" and len(user.inputs) > 1 else None
        if target is None or target.op_type != "Concat" or len(target.inputs) != 3:
            continue
        lead, length, key = target.inputs
        source = length.producer()
        if (_ints(lead) == [1, 1] and _ints(key) == [1] and source is not None and source.op_type == "Shape"
                and source.attributes.get_int("start", 0) == query_axis
                and source.attributes.get_int("end", 0) == query_axis + 1
                and source.inputs[0].shape is not None and len(source.inputs[0].shape) > query_axis
                and same_dim(source.inputs[0].shape[query_axis], query_length)):
            return user.outputs[0]
    return None


def _ints(value: ir.Value | None) -> list[int] | None:
    array = constant(value)
    return None if array is None else [int(x) for x in array.ravel()]
