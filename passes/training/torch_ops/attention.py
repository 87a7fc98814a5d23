"""ONNX Attention (opset 23-25): scaled dot-product attention with its masks, caches and grouped-query heads."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from onnxcompress.passes.training.torch_ops.attributes import attr_float, attr_int


def attention(node, opset, q, k, v, mask=None, past_key=None, past_value=None, nonpad=None):
    """ONNX Attention (opset 23+; what PyTorch's exporter writes for scaled_dot_product_attention at opset 23):
    3-D inputs split into heads, a past key/value cache, grouped-query heads, an additive or boolean mask, causal
    and sliding-window masks aligned after the cache, softcap; outputs Y, the present key and value, and the
    QK product in the stage ``qk_matmul_output_mode`` names."""
    three_d = q.dim() == 3
    if three_d:
        kv_heads = attr_int(node, "kv_num_heads", 0)
        q, k, v = split_heads(q, attr_int(node, "q_num_heads", 0)), split_heads(k, kv_heads), split_heads(v, kv_heads)
    if past_key is not None:
        k, v = torch.cat([past_key, k], dim=2), torch.cat([past_value, v], dim=2)
    present_key, present_value = k, v
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves q_heads / kv_heads query heads
        k, v = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1), v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scale = node.attributes.get_float("scale", None)
    root = torch.tensor((1 / float(np.sqrt(q.shape[-1])) if scale is None else scale) ** 0.5, dtype=q.dtype)
    scores = (q * root) @ (k * root).transpose(-1, -2)
    softcap = attr_float(node, "softcap", 0.0)
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    bias = _attention_bias(node, q, k, mask, past_key, nonpad)
    with_bias = scores + bias
    blocked = torch.isneginf(bias.amax(dim=-1, keepdim=True))  # a query no key may reach gives 0, not NaN
    weights = torch.where(blocked, 0.0, torch.where(blocked, 0.0, with_bias).float().softmax(dim=-1)).to(q.dtype)
    y = weights @ v
    if three_d:
        y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
    mode = attr_int(node, "qk_matmul_output_mode", 0)
    return y, present_key, present_value, {0: scores, 1: scores, 2: with_bias, 3: weights}[mode]


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[batch, sequence, heads * size]`` -> ``[batch, heads, sequence, size]``."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _attention_bias(node, q, k, mask, past_key, nonpad) -> torch.Tensor:
    """The additive bias of the scores: the mask (padded with "masked" up to the keys), then the causal and
    sliding-window limits, offset by the cache (the past's length, or each batch's ``nonpad`` count less the
    queries), then the keys past ``nonpad``."""
    queries, keys = q.shape[2], k.shape[2]
    blocked = torch.tensor(float("-inf"), dtype=q.dtype)
    bias = torch.zeros(queries, keys, dtype=q.dtype)
    if mask is not None:
        pad = [0, keys - mask.shape[-1]]
        mask = F.pad(mask, pad, value=False) if mask.dtype == torch.bool else F.pad(mask, pad, value=float("-inf"))
        bias = bias + (torch.where(mask, 0.0, blocked).to(q.dtype) if mask.dtype == torch.bool else mask.to(q.dtype))
    if past_key is None and nonpad is not None:
        offset = (nonpad.reshape(-1) - queries).reshape(-1, 1, 1, 1)
    else:
        offset = torch.tensor(past_key.shape[2] if past_key is not None else 0)
    behind = torch.arange(queries).reshape(-1, 1) + offset - torch.arange(keys).reshape(1, -1)  # query position - key
    allowed = torch.ones_like(behind, dtype=torch.bool)
    left, right = attr_int(node, "left_window_size", -1), attr_int(node, "right_window_size", -1)
    if attr_int(node, "is_causal", 0):
        allowed = allowed & (behind >= 0)
    if left >= 0:
        allowed = allowed & (behind <= left)
    if right >= 0:
        allowed = allowed & (-behind <= right)
    bias = bias + torch.where(allowed, 0.0, blocked).to(q.dtype)
    if nonpad is not None:
        bias = bias + torch.where(torch.arange(keys).reshape(1, 1, 1, -1) < nonpad.reshape(-1, 1, 1, 1), 0.0, blocked).to(q.dtype)
    return bias
