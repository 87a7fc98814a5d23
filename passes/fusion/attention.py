"""Multi-head scaled dot-product attention written out as ops → the standard ``Attention`` op (opset ≥ 23).

The decomposed form (Reshape/Transpose into heads for Q, K and V, ``MatMul(Q, Kᵀ)``, scale, mask
``Add``, ``Softmax``, ``MatMul`` with V, Transpose/Reshape back) becomes one ``Attention`` node on
the 3-D projections, with ``q_num_heads``/``kv_num_heads`` and the exporter's scale. The merge
Reshape stays on the op's output (same elements in the same order), so a merge shape the exporter
computes at run time stays right.

Ours: onnxscript fuses attention only into ORT's contrib ops (``com.microsoft``). ORT's CPU kernel
for the standard op ran MiniLM-sized attention (batch 8, 12 heads, sequence 128) in 1.4 ms against
2.0 ms decomposed, and all-MiniLM-L6-v2 runs faster end to end, in FP32 and after dynamic INT8
(the INT8 rows with and without ``fuse:opset=23`` in ``docs/benchmarks/bench_quantization.md``).

Blocks whose head split or merge is not this one (PyTorch's ``nn.MultiheadAttention``, the dynamo
exports' computed shapes) are fused on their 4-D heads instead (``attention_heads.py``); those rules
leave a block to these when these fuse it, since the 3-D form spares ORT the head transposes.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxcompress.passes.fusion import attention_heads
from onnxcompress.passes.fusion._attention_mask import fits_scores, mask_for_ort
from onnxcompress.passes.values import constant, last_dim
from onnxcompress.passes.fusion.reshape_dims import copied_dims_shape

NAME = "attention"
MIN_OPSET = 23
TRIGGER_OPS = frozenset({"Softmax"})
INTO_HEADS = (0, 2, 1, 3)
INTO_HEADS_TRANSPOSED = (0, 2, 3, 1)


class AttentionFusion(pattern.RewriteRuleClassBase):
    """Match head split → ``MatMul(Q, Kᵀ)`` → scale (Mul or Div) → [mask Add] → Softmax → ``MatMul(·, V)`` → merge."""

    def __init__(self, divide: bool, masked: bool) -> None:
        super().__init__(name=f"{type(self).__name__}{'Div' if divide else 'Mul'}{'Masked' if masked else ''}")
        self.divide = divide
        self.masked = masked

    def pattern(self, op, q, k, v, q_shape, k_shape, v_shape, factor, mask, out_shape):
        q_heads = op.Transpose(op.Reshape(q, q_shape), _outputs=["q_heads"])
        k_heads = op.Transpose(op.Reshape(k, k_shape), _outputs=["k_heads"])
        v_heads = op.Transpose(op.Reshape(v, v_shape), _outputs=["v_heads"])
        scores = op.MatMul(q_heads, k_heads)
        scores = op.Div(scores, factor) if self.divide else op.Mul(scores, factor)
        if self.masked:
            scores = op.Add(scores, mask)
        probs = op.Softmax(scores, _outputs=["probs"])
        weighted = op.Transpose(op.MatMul(probs, v_heads), _outputs=["weighted"])
        return op.Reshape(weighted, out_shape, _outputs=["merged"])

    def check(self, context, q, k, v, q_shape, k_shape, v_shape, factor, out_shape, q_heads, k_heads, v_heads,
              probs, merged, mask=None, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if any(x.dtype != ir.DataType.FLOAT for x in (q, k, v)):
            return result.fail("Q, K and V are not all float32")
        perms = [_perm(node) for node in (q_heads.producer(), k_heads.producer(), v_heads.producer(), merged.producer().inputs[0].producer())]
        if perms != [INTO_HEADS, INTO_HEADS_TRANSPOSED, INTO_HEADS, INTO_HEADS]:
            return result.fail(f"head transposes {perms} are not the split/merge of [B, S, N, H]")
        splits = [_head_split(x, shape) for x, shape in ((q, q_shape), (k, k_shape), (v, v_shape))]
        if None in splits or len(set(splits)) != 1:
            return result.fail(f"Q/K/V reshapes {splits} are not one split of the last axis into heads")
        if merged.producer().attributes.get_int("allowzero", 0) != 0 or not _keeps_merged_layout(out_shape):
            return result.fail("the output reshape may copy a head dimension (a 0 after the first two entries)")
        if _scale(factor, self.divide) is None:
            return result.fail("the score scale is not a positive scalar constant")
        if probs.producer().attributes.get_int("axis", -1) not in (-1, 3):
            return result.fail("Softmax is not over the key axis")
        if mask is not None and (mask.dtype != ir.DataType.FLOAT or mask.shape is None or len(mask.shape) > 4):
            return result.fail("the mask is not a float tensor of known rank <= 4")
        if mask is not None and not fits_scores(mask, [q.shape[0], splits[0][0], q.shape[1], k.shape[1]]):
            return result.fail(f"the mask {mask.shape} broadcasts the scores to a larger shape")
        return result

    def rewrite(self, op, q, k, v, q_shape, factor, out_shape, mask=None, **_):
        heads, _head_size = _head_split(q, q_shape)
        inputs = [q, k, v] if mask is None else [q, k, v, mask_for_ort(op, mask, q, k, sequence_axis=1)]
        attended = op.Attention(*inputs, q_num_heads=heads, kv_num_heads=heads, scale=_scale(factor, self.divide))
        return attended if _merges_to_own_shape(q, out_shape) else op.Reshape(attended, out_shape)


def _perm(node: ir.Node | None) -> tuple[int, ...] | None:
    if node is None or node.op_type != "Transpose":
        return None
    perm = node.attributes.get_ints("perm")
    return tuple(perm) if perm is not None else None


def _head_split(x: ir.Value, shape: ir.Value) -> tuple[int, int] | None:
    """(heads, head size) when the reshape target is ``[0, 0, N, H]`` on ``x``'s known last axis (``N`` may be ``-1``)."""
    dims = constant(shape)
    features = last_dim(x)
    if dims is None or dims.shape != (4,) or dims[0] != 0 or dims[1] != 0 or features is None:
        return None
    heads, head_size = int(dims[2]), int(dims[3])
    if heads == -1 and head_size > 0 and features % head_size == 0:
        heads = features // head_size
    return (heads, head_size) if heads > 0 and heads * head_size == features else None


def _keeps_merged_layout(shape: ir.Value) -> bool:
    """Whether reshaping ``[B, S, N·H]`` instead of ``[B, S, N, H]`` by ``shape`` gives the same tensor.

    Both hold the same elements in the same order, so only a ``0`` ("copy the input's dimension") past
    the first two entries could differ; the entries must be constants there (a Concat's tail counts).
    """
    dims = constant(shape)
    if dims is None:
        concat = shape.producer()
        if concat is None or concat.op_type != "Concat":
            return False
        tail = [constant(part) for part in concat.inputs[2:]]
        if len(concat.inputs) < 3 or any(part is None or part.size != 1 for part in tail):
            return False
        dims = np.concatenate([np.zeros(2, dtype=np.int64), *[part.reshape(1) for part in tail]])
    return dims.ndim == 1 and bool(np.all(dims[2:] != 0))


def _merges_to_own_shape(q: ir.Value, shape: ir.Value) -> bool:
    """Whether the merge reshape gives ``[B, S, N·H]`` back, the shape the Attention op outputs (q's):
    ``[0, 0, -1]`` or ``[0, 0, N·H]``, as constants or as q's own first two dims read through ``Shape``."""
    dims = constant(shape)
    dims = [int(d) for d in dims] if dims is not None and dims.ndim == 1 else copied_dims_shape(q, shape)
    return dims is not None and dims[:2] == [0, 0] and len(dims) == 3 and dims[2] in (-1, last_dim(q))


def _scale(factor: ir.Value, divide: bool) -> float | None:
    value = constant(factor)
    if value is None or value.size != 1 or value.ndim > 4 or not float(value.reshape(())) > 0:
        return None
    return 1.0 / float(value.reshape(())) if divide else float(value.reshape(()))


SPLIT_RULES = [AttentionFusion.rule(divide=divide, masked=masked) for divide in (False, True) for masked in (True, False)]
RULES = SPLIT_RULES + attention_heads.rules(defer_to=SPLIT_RULES)
