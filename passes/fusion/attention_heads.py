"""Attention on 4-D heads ``[B, N, S, H]`` → the standard ``Attention`` op, whatever splits the heads around it.

PyTorch's ``nn.MultiheadAttention`` (both exporters) splits its packed ``in_proj`` into sequence-first
heads through computed shapes, and the dynamo exports of transformers' models read their head-split
shapes from ``Shape`` at run time, so the 3-D rule (``attention.py``) matches neither. What every
form shares is the core on 4-D heads: ``MatMul(Q·a, Kᵀ·b)`` → [``·c`` or ``/c``] → [mask ``Add``] →
``Softmax`` → ``MatMul(·, V)``, which the op takes as it is (4-D Q, K, V in, 4-D out); the head split
and merge around it stay.

- Scale: PyTorch puts the square root of the scale on Q and on Kᵀ; the legacy exporter computes it at
  run time from Q's head size (``sqrt(1 / sqrt(H))``). Each factor is read as ``c · H^e`` (``H`` = Q's
  last dim), so a scale that is ``1/sqrt(H)`` becomes the op's default even when ``H`` is not static.
- Kᵀ: a ``Transpose`` (K's own split perm with the last two axes swapped, undone into K's perm), or
  the dynamo export's flatten → ``Transpose`` → unflatten through shapes read from K itself.

A block the 3-D rule fuses is left to it: its form spares ORT the head transposes.
"""

from __future__ import annotations

import functools
import math

import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxcompress.passes.fusion._attention_mask import fits_scores, mask_for_ort
from onnxcompress.passes.values import FLOAT_TYPES, constant, rank

HEADS_RANK = 4
SEQUENCE_AXIS = 2  # of Q, K and V as heads [B, N, S, H]
IDENTITY = (0, 1, 2, 3)
Monomial = tuple[float, float]  # (c, e): the value c · H^e, H the head size


class HeadsAttentionFusion(pattern.RewriteRuleClassBase):
    """Match ``MatMul(Q·a, Kᵀ·b)`` → [scale] → [mask Add] → Softmax → ``MatMul(·, V)`` on 4-D heads."""

    def __init__(self, score_scale: str | None, masked: bool, defer_to: tuple) -> None:
        """``score_scale``: "Mul", "Div" or None (the scores' own scale op); ``defer_to``: rules (the 3-D
        ones) that fuse a whole block including its merge, which win over this one where they match."""
        super().__init__(name=f"{type(self).__name__}{score_scale or ''}{'Masked' if masked else ''}")
        self.score_scale = score_scale
        self.masked = masked
        self.defer_to = defer_to

    def pattern(self, op, q_side, k_side, v, factor, mask):
        scores = op.MatMul(q_side, k_side)
        if self.score_scale == "Mul":
            scores = op.Mul(scores, factor)
        elif self.score_scale == "Div":
            scores = op.Div(scores, factor)
        if self.masked:
            scores = op.Add(scores, mask)
        probs = op.Softmax(scores, _outputs=["probs"])
        return op.MatMul(probs, v, _outputs=["weighted"])

    def check(self, context, q_side, k_side, v, probs, weighted, factor=None, mask=None, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        parts = self._parts(q_side, k_side, factor)
        if parts is None:
            return result.fail("Q or Kᵀ is not 4-D heads scaled by constants or powers of the head size")
        q, (k, perm), _ = parts
        if any(x.dtype != ir.DataType.FLOAT for x in (q, k, v)) or any(rank(x) != HEADS_RANK for x in (q, k, v)):
            return result.fail("Q, K and V are not all float32 4-D heads")
        if probs.producer().attributes.get_int("axis", -1) not in (-1, HEADS_RANK - 1):
            return result.fail("Softmax is not over the key axis")
        if _scale(parts[2], q) is _UNKNOWN:
            return result.fail("the scale depends on a head size that is not static")
        if mask is not None and (mask.dtype not in FLOAT_TYPES or mask.dtype != q.dtype or rank(mask) is None
                                 or rank(mask) > HEADS_RANK):
            return result.fail("the mask is not a float tensor of known rank <= 4")
        if mask is not None and not fits_scores(mask, [*q.shape[:SEQUENCE_AXIS + 1], _key_length(k, perm)]):
            return result.fail(f"the mask {mask.shape} broadcasts the scores to a larger shape")
        if self._deferred(context, weighted):
            return result.fail("the 3-D rule fuses this block with its head split and merge")
        return result

    def rewrite(self, op, q_side, k_side, v, factor=None, mask=None, **_):
        q, (k, perm), monomial = self._parts(q_side, k_side, factor)
        keys = k if perm is None else _transposed(op, k, perm)
        inputs = [q, keys, v] if mask is None else [q, keys, v, mask_for_ort(op, mask, q, keys, SEQUENCE_AXIS)]
        scale = _scale(monomial, q)
        return op.Attention(*inputs) if scale is None else op.Attention(*inputs, scale=scale)

    def _parts(self, q_side: ir.Value, k_side: ir.Value, factor: ir.Value | None):
        """(Q, (K's source, perm to apply or None), the total scale as a monomial), or None."""
        q, q_factor = _unscaled(q_side, None)
        k_t, k_factor = _unscaled(k_side, q)
        keys = _keys_of(k_t)
        score_factor = (1.0, 0.0) if factor is None else _monomial(factor, q)
        if None in (q_factor, k_factor, score_factor) or keys is None:
            return None
        if self.score_scale == "Div":
            score_factor = (1.0 / score_factor[0], -score_factor[1])
        c, e = q_factor[0] * k_factor[0] * score_factor[0], q_factor[1] + k_factor[1] + score_factor[1]
        return (q, keys, (c, e)) if c > 0 else None

    def _deferred(self, context, weighted: ir.Value) -> bool:
        """Whether a rule in ``defer_to`` matches at the merge Reshape after ``weighted``'s Transpose."""
        users = list(weighted.uses())
        if len(users) != 1 or users[0].node.op_type != "Transpose":
            return False
        merges = list(users[0].node.outputs[0].uses())
        if len(merges) != 1 or merges[0].node.op_type != "Reshape":
            return False
        return any(rule.match(context.model, context.graph_or_function, merges[0].node) for rule in _commuted(self.defer_to))


def _key_length(k: ir.Value, perm: tuple[int, ...] | None) -> int | ir.SymbolicDim | None:
    """The key length of ``k`` as ``[B, N, S, H]`` after ``perm`` (None: ``k`` is already in that layout)."""
    return None if k.shape is None else k.shape[SEQUENCE_AXIS if perm is None else perm[SEQUENCE_AXIS]]


def _transposed(op, k: ir.Value, perm: tuple[int, ...]) -> ir.Value:
    """``Transpose(k, perm)`` with its shape set from ``k``'s, so the mask can be proven to fit the keys."""
    keys = op.Transpose(k, perm=list(perm))
    if k.shape is not None:
        keys.shape, keys.dtype = ir.Shape([k.shape[axis] for axis in perm]), k.dtype
    return keys


@functools.cache
def _commuted(rules: tuple) -> tuple:
    return tuple(pattern.RewriteRuleSet(list(rules), commute=True).rules)


_UNKNOWN = object()


def _scale(monomial: Monomial, q: ir.Value) -> float | None | object:
    """The op's scale attribute: None for its default ``1/sqrt(H)``, ``_UNKNOWN`` when H is needed but not static."""
    c, e = monomial
    if e == 0:
        return c
    if e == -0.5 and math.isclose(c, 1.0, rel_tol=1e-6):
        return None
    head_size = q.shape[-1] if q.shape is not None else None
    return c * float(head_size) ** e if isinstance(head_size, int) else _UNKNOWN


def _unscaled(value: ir.Value, q: ir.Value | None) -> tuple[ir.Value, Monomial | None]:
    """``value`` without a ``Mul`` by a scalar factor, and that factor (``(1, 0)`` when there is none).

    ``q`` is the tensor whose head size a factor may read; None means the factor is read against the
    Mul's other input (Q itself, on the query side)."""
    node = value.producer()
    if node is None or node.op_type != "Mul":
        return value, (1.0, 0.0)
    for data, factor in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        if rank(data) == HEADS_RANK and _size_one(factor):
            monomial = _monomial(factor, data if q is None else q)
            if monomial is not None:
                return data, monomial
    return value, (1.0, 0.0)


def _size_one(value: ir.Value | None) -> bool:
    return value is not None and value.shape is not None and all(d == 1 for d in value.shape) and len(value.shape) <= 1


def _monomial(value: ir.Value | None, q: ir.Value) -> Monomial | None:
    """``value`` as ``c · H^e`` with ``H`` the last dim of ``q``: constants, ``q``'s last dim read through
    ``Shape``, and Cast (to a float type), Sqrt, Reciprocal, Mul and Div of those; None otherwise."""
    array = constant(value)
    if array is not None:
        scalar = array.size == 1 and array.ndim <= HEADS_RANK and array.dtype.kind in "fiu"  # a 5-D [1]*5 adds an axis
        return (float(array.reshape(())), 0.0) if scalar else None
    node = value.producer() if value is not None else None
    if node is None:
        return None
    if _reads_head_size(node, q):
        return (1.0, 1.0)
    if node.op_type == "Cast" and ir.DataType(node.attributes.get_int("to", 0)) in FLOAT_TYPES:
        return _monomial(node.inputs[0], q)
    if node.op_type in ("Sqrt", "Reciprocal"):
        inner = _monomial(node.inputs[0], q)
        if inner is None or inner[0] <= 0:
            return None
        return (math.sqrt(inner[0]), inner[1] / 2) if node.op_type == "Sqrt" else (1.0 / inner[0], -inner[1])
    if node.op_type in ("Mul", "Div") and node.outputs[0].dtype in FLOAT_TYPES:
        a, b = (_monomial(x, q) for x in node.inputs)
        if a is None or b is None or (node.op_type == "Div" and b[0] == 0):
            return None
        return (a[0] * b[0], a[1] + b[1]) if node.op_type == "Mul" else (a[0] / b[0], a[1] - b[1])
    return None


def _reads_head_size(node: ir.Node, q: ir.Value) -> bool:
    """Whether ``node`` outputs ``q``'s last dim alone: ``Slice`` or ``Gather`` of ``Shape(q)`` (or ``Shape(q, start=-1)``)."""
    if node.op_type == "Shape":
        return node.inputs[0] is q and _shape_axes(node, q) == [HEADS_RANK - 1]
    if node.op_type not in ("Slice", "Gather") or node.inputs[0] is None:
        return False
    source = node.inputs[0].producer()
    if source is None or source.op_type != "Shape" or source.inputs[0] is not q:
        return False
    axes = _picked(_shape_axes(source, q), node)
    return axes == [HEADS_RANK - 1]


def _shape_axes(shape_node: ir.Node, source: ir.Value) -> list[int] | None:
    """The axes of ``source`` that a ``Shape`` node outputs (its ``start``/``end``), when ``source``'s rank is known."""
    count = rank(source)
    if count is None:
        return None
    start = shape_node.attributes.get_int("start", 0)
    end = shape_node.attributes.get_int("end", count)
    return list(range(count))[start:end]


def _picked(axes: list[int] | None, node: ir.Node) -> list[int] | None:
    """The entries of ``axes`` that a ``Slice`` (one step, axis 0) or ``Gather`` (axis 0) node selects."""
    if axes is None:
        return None
    if node.op_type == "Gather":
        index = constant(node.inputs[1])
        if node.attributes.get_int("axis", 0) != 0 or index is None or index.size != 1:
            return None
        position = int(index.reshape(()))
        return [axes[position]] if -len(axes) <= position < len(axes) else None
    starts, ends = constant(node.inputs[1]), constant(node.inputs[2])
    extra = [constant(x) if x is not None else None for x in node.inputs[3:]]
    if starts is None or ends is None or starts.size != 1 or ends.size != 1:
        return None
    if any(x is None and given is not None for x, given in zip(extra, node.inputs[3:])):
        return None
    if (len(extra) > 0 and extra[0] is not None and extra[0].ravel().tolist() not in ([0], [-1])) or \
            (len(extra) > 1 and extra[1] is not None and extra[1].ravel().tolist() != [1]):
        return None
    return axes[int(starts.ravel()[0]):int(ends.ravel()[0])]


def _keys_of(k_t: ir.Value) -> tuple[ir.Value, tuple[int, ...] | None] | None:
    """K as ``[B, N, S, H]`` for ``k_t`` = K with its last two axes swapped: (source, perm to apply or None)."""
    node = k_t.producer()
    if node is None:
        return None
    if node.op_type == "Transpose":
        perm = node.attributes.get_ints("perm")
        if perm is None or len(perm) != HEADS_RANK:
            return None
        keys = (perm[0], perm[1], perm[3], perm[2])
        return node.inputs[0], (None if keys == IDENTITY else keys)
    if node.op_type == "Reshape":
        return unflattened_keys(node)
    return None


def unflattened_keys(unflatten: ir.Node) -> tuple[ir.Value, None] | None:
    """The dynamo form ``Reshape(Transpose(Reshape(K, [-1, S, H]), [0, 2, 1]), [B, N, H, S])``, shapes read from K."""
    swap = unflatten.inputs[0].producer()
    if swap is None or swap.op_type != "Transpose" or tuple(swap.attributes.get_ints("perm") or ()) != (0, 2, 1):
        return None
    flatten = swap.inputs[0].producer()
    if flatten is None or flatten.op_type != "Reshape":
        return None
    k = flatten.inputs[0]
    if rank(k) != HEADS_RANK:
        return None
    flat, back = _shape_entries(flatten.inputs[1], k), _shape_entries(unflatten.inputs[1], k)
    if flat is None or back is None or flat[0] != -1 or not _are_axes(flat[1:], k, [2, 3]) or not _are_axes(back, k, [0, 1, 3, 2]):
        return None
    return k, None


def _shape_entries(shape: ir.Value, source: ir.Value) -> list | None:
    """A shape tensor's entries: ints for constants, ``("axis", i)`` for ``source``'s dim i read through ``Shape``."""
    known = constant(shape)
    if known is not None:
        return [int(x) for x in known.ravel()] if known.ndim == 1 else None
    concat = shape.producer()
    parts = concat.inputs if concat is not None and concat.op_type == "Concat" else [shape]
    entries: list = []
    for part in parts:
        array = constant(part)
        if array is not None and array.ndim == 1:
            entries.extend(int(x) for x in array)
            continue
        node = part.producer() if part is not None else None
        if node is None:
            return None
        if node.op_type == "Shape" and node.inputs[0] is source:
            axes = _shape_axes(node, source)
        elif node.op_type == "Slice" and node.inputs[0].producer() is not None \
                and node.inputs[0].producer().op_type == "Shape" and node.inputs[0].producer().inputs[0] is source:
            axes = _picked(_shape_axes(node.inputs[0].producer(), source), node)
        else:
            return None
        if axes is None:
            return None
        entries.extend(("axis", axis) for axis in axes)
    return entries


def _are_axes(entries: list, source: ir.Value, axes: list[int]) -> bool:
    """Whether each entry is ``source``'s dim at the axis given, read through Shape or a constant equal to its static size."""
    if len(entries) != len(axes):
        return False
    dims = source.shape
    return all(entry == ("axis", axis) or (isinstance(entry, int) and dims is not None and dims[axis] == entry > 0)
               for entry, axis in zip(entries, axes))


def rules(defer_to: list) -> list:
    """The 4-D rules, each leaving a block to a rule of ``defer_to`` that fuses it whole."""
    return [HeadsAttentionFusion.rule(score_scale=scale, masked=masked, defer_to=tuple(defer_to))
            for scale in ("Mul", "Div", None) for masked in (True, False)]
