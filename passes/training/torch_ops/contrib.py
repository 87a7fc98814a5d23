"""The com.microsoft ops ONNX Runtime's transformer optimizer writes (``onnxruntime.transformers.optimizer``, and
Optimum's ORT-optimized exports): fused attention, embedding and skip layer norms, GELU variants, FusedMatMul.

A model that went through that optimizer before it reached us keeps these ops; in torch they are their unfused
definitions (ONNX Runtime's contrib-op schemas), so the model trains as ONNX Runtime runs it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from onnxcompress.passes.training.torch_ops.arithmetic import root_mean_squared, standardised
from onnxcompress.passes.training.torch_ops.attention import split_heads
from onnxcompress.passes.training.torch_ops.attributes import Op, attr_float, attr_int, attr_ints, positive_axis
from onnxcompress.passes.training.untrainable import untrainable

EPSILON = 1e-12  # the contrib normalisations' default
QUICK_GELU_ALPHA = 1.702
MASK_FILTER_VALUE = -10000.0  # Attention's default score for a masked key


def skip_layer_norm(node, opset, x, skip, gamma, beta=None, bias=None):
    """SkipLayerNormalization: LayerNorm over the last axis of ``x + skip (+ bias)``; also its mean, inverse standard
    deviation and the sum itself."""
    total = _skip_sum(x, skip, bias)
    normal, mean, inverse = standardised(total, (-1,), attr_float(node, "epsilon", EPSILON))
    y = normal * gamma
    return (y if beta is None else y + beta), mean, inverse, total


def skip_simplified_layer_norm(node, opset, x, skip, gamma, bias=None):
    """SkipSimplifiedLayerNormalization: RMSNorm over the last axis of ``x + skip (+ bias)``; the mean output is
    not computed (left empty)."""
    total = _skip_sum(x, skip, bias)
    normal, inverse = root_mean_squared(total, (-1,), attr_float(node, "epsilon", EPSILON))
    return normal * gamma, None, inverse, total


def rms_norm(node, opset, x, scale):
    """RMSNormalization (ONNX opset 23) and ORT's SimplifiedLayerNormalization (registered in the default domain):
    ``x`` over its axes from ``axis`` on divided by their root mean square, times ``scale``; also the inverse."""
    axis = positive_axis(attr_int(node, "axis", -1), x.dim())
    normal, inverse = root_mean_squared(x.float(), tuple(range(axis, x.dim())), attr_float(node, "epsilon", 1e-5))
    return normal.to(x.dtype) * scale, inverse


def _skip_sum(x, skip, bias):
    total = x + skip
    return total if bias is None else total + bias


def embed_layer_norm(node, opset, input_ids, segment_ids, word, position, segment, gamma, beta, mask=None, position_ids=None):
    """EmbedLayerNormalization: word, position and segment embeddings summed, then LayerNorm; the mask's count of
    kept tokens per sample (int32, ``mask_index``) and the sum before the norm."""
    ids = position_ids if position_ids is not None else torch.arange(input_ids.shape[1]).unsqueeze(0)
    total = word[input_ids.long()] + position[ids.long()].expand(input_ids.shape[0], -1, -1)
    if segment_ids is not None and segment is not None:
        total = total + segment[segment_ids.long()]
    normal, _, _ = standardised(total, (-1,), attr_float(node, "epsilon", EPSILON))
    y = normal * gamma + beta
    kept = mask.sum(dim=1) if mask is not None else torch.zeros(input_ids.shape[0], dtype=torch.int64)
    return y, kept.to(torch.int32), total


def attention(node, opset, x, weights, bias=None, mask_index=None, past=None, attention_bias=None, past_sequence_length=None):
    """com.microsoft Attention without a cache, as ONNX Runtime's CPU kernel computes it: one projection to Q, K and V
    (``qkv_hidden_sizes`` or thirds), heads, scaled scores plus ``attention_bias`` and a mask added to them:
    ``mask_filter_value`` at keys ``mask_index`` hides (every form the CPU kernel takes) and the lowest float at later
    keys when ``unidirectional``; the heads joined back."""
    if past is not None or attr_int(node, "do_rotary", 0):
        raise untrainable("com.microsoft Attention with a past state or rotary embeddings is not supported")
    heads = attr_int(node, "num_heads", 1)
    projected = x @ weights if bias is None else x @ weights + bias
    sizes = attr_ints(node, "qkv_hidden_sizes", None) or [weights.shape[1] // 3] * 3
    q, k, v = (split_heads(t, heads) for t in projected.split(list(sizes), dim=-1))
    scale = node.attributes.get_float("scale", None)
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if attention_bias is not None:
        scores = scores + attention_bias
    hidden = torch.tensor(attr_float(node, "mask_filter_value", MASK_FILTER_VALUE), dtype=scores.dtype)
    added = torch.where(_kept_keys(mask_index, x.shape[0], k.shape[2]), torch.tensor(0.0, dtype=scores.dtype), hidden)
    if attr_int(node, "unidirectional", 0):
        later = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).triu(1)
        added = torch.where(later, torch.tensor(torch.finfo(scores.dtype).min, dtype=scores.dtype), added)
    y = (scores + added).softmax(dim=-1) @ v
    return y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1), None


def _kept_keys(mask_index, batch: int, keys: int) -> torch.Tensor:
    """Which keys each query may see, ``[batch or 1, 1, queries or 1, keys]``, from ``mask_index``: lengths
    ``[batch]`` (right padding), ends then starts ``[2 * batch]`` (left padding), or a raw 0/1 mask
    ``[batch, keys]`` or ``[batch, queries, keys]``."""
    if mask_index is None:
        return torch.ones(1, 1, 1, keys, dtype=torch.bool)
    if mask_index.dim() == 1:
        position = torch.arange(keys).reshape(1, -1)
        end = mask_index[:batch].reshape(-1, 1)
        start = mask_index[batch:].reshape(-1, 1) if mask_index.shape[0] == 2 * batch else torch.zeros_like(end)
        return ((position >= start) & (position < end)).reshape(batch, 1, 1, keys)
    if mask_index.dim() == 2:
        return (mask_index > 0).reshape(batch, 1, 1, keys)
    if mask_index.dim() == 3:
        return (mask_index > 0).unsqueeze(1)
    raise untrainable("com.microsoft Attention with a 4-D mask_index is not supported")


def fused_matmul(node, opset, a, b):
    """FusedMatMul: ``alpha * A' @ B'`` with either operand's last two axes transposed."""
    if attr_int(node, "transBatchA", 0) or attr_int(node, "transBatchB", 0):
        raise untrainable("FusedMatMul with transBatchA or transBatchB is not supported")
    a = a.transpose(-1, -2) if attr_int(node, "transA", 0) else a
    b = b.transpose(-1, -2) if attr_int(node, "transB", 0) else b
    return (a @ b) * attr_float(node, "alpha", 1.0)


def fast_gelu(node, opset, x, bias=None):
    """FastGelu: GELU's tanh approximation of ``x (+ bias)``."""
    return F.gelu(x if bias is None else x + bias, approximate="tanh")


CONTRIB_OPS: dict[str, Op] = {
    "Attention": attention, "EmbedLayerNormalization": embed_layer_norm, "SkipLayerNormalization": skip_layer_norm,
    "SkipSimplifiedLayerNormalization": skip_simplified_layer_norm, "FusedMatMul": fused_matmul, "FastGelu": fast_gelu,
    "Gelu": lambda node, opset, x: F.gelu(x), "BiasGelu": lambda node, opset, a, b: F.gelu(a + b),
    "QuickGelu": lambda node, opset, x: x * torch.sigmoid(attr_float(node, "alpha", QUICK_GELU_ALPHA) * x),
}
