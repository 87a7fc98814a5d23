"""Ops that compute: products, normalisations, reductions, activations, and index-of-extreme."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from onnxcompress.passes.training.torch_ops.attributes import Op, attr_float, attr_int, axes_of, positive_axis
from onnxcompress.passes.training.untrainable import untrainable


def gemm(node, opset, a, b, c=None):
    """Gemm: ``alpha * A' @ B' + beta * C`` with ``transA``/``transB``."""
    a = a.transpose(0, 1) if attr_int(node, "transA", 0) else a
    b = b.transpose(0, 1) if attr_int(node, "transB", 0) else b
    y = attr_float(node, "alpha", 1.0) * (a @ b)
    return y if c is None else y + attr_float(node, "beta", 1.0) * c


def batch_norm(node, opset, x, scale, bias, mean, var):
    """BatchNormalization in inference (the running statistics); its training mode is declined."""
    if attr_int(node, "training_mode", 0):
        raise untrainable("BatchNormalization in training mode is not supported")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    eps = attr_float(node, "epsilon", 1e-5)
    return (x - mean.reshape(shape)) / (var.reshape(shape) + eps).sqrt() * scale.reshape(shape) + bias.reshape(shape)


def layer_norm(node, opset, x, scale, bias=None):
    """LayerNormalization over the axes from ``axis`` on, with its Mean and InvStdDev outputs."""
    axis = positive_axis(attr_int(node, "axis", -1), x.dim())
    normal, mean, inverse = standardised(x, tuple(range(axis, x.dim())), attr_float(node, "epsilon", 1e-5))
    y = normal * scale
    return (y if bias is None else y + bias), mean, inverse


def standardised(x: torch.Tensor, dims: tuple[int, ...], epsilon: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` centred and divided by its standard deviation over ``dims`` (a LayerNorm before its scale), with the mean
    and the inverse standard deviation: what every spelling of LayerNorm computes."""
    mean = x.mean(dim=dims, keepdim=True)
    inverse = ((x - mean) ** 2).mean(dim=dims, keepdim=True).add(epsilon).rsqrt()
    return (x - mean) * inverse, mean, inverse


def root_mean_squared(x: torch.Tensor, dims: tuple[int, ...], epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` divided by its root mean square over ``dims`` (an RMSNorm before its scale), with the inverse."""
    inverse = x.pow(2).mean(dim=dims, keepdim=True).add(epsilon).rsqrt()
    return x * inverse, inverse


def instance_norm(node, opset, x, scale, bias):
    """InstanceNormalization: each sample's channel over its spatial axes, then ``scale`` and ``bias`` per channel."""
    return F.instance_norm(x, weight=scale, bias=bias, eps=attr_float(node, "epsilon", 1e-5))


def group_norm(node, opset, x, scale, bias):
    """GroupNormalization over ``num_groups`` groups of channels; ``scale`` and ``bias`` per channel (opset 21) or
    per group (opset 18)."""
    groups = attr_int(node, "num_groups", 1)
    if scale.shape[0] != x.shape[1]:  # opset 18: one scale and bias per group
        scale, bias = scale.repeat_interleave(x.shape[1] // groups), bias.repeat_interleave(x.shape[1] // groups)
    return F.group_norm(x, groups, scale, bias, attr_float(node, "epsilon", 1e-5))


def reduce(function: Callable[..., torch.Tensor], axes_input_since: int) -> Op:
    """A Reduce* op whose axes moved from attribute to input at opset ``axes_input_since``."""

    def run(node, opset, x, axes=None):
        wanted = axes_of(node, opset, axes, axes_input_since)
        keep = bool(attr_int(node, "keepdims", 1))
        if not wanted:
            if attr_int(node, "noop_with_empty_axes", 0):
                return x
            wanted = list(range(x.dim()))
        return function(x, tuple(positive_axis(a, x.dim()) for a in wanted), keep)

    return run


def amax(x, dims, keep):
    """ReduceMax's reduction (over no elements: the type's least value)."""
    return x.amax(dim=dims, keepdim=keep) if x.numel() else _of_nothing(x, dims, keep, lowest=True)


def amin(x, dims, keep):
    """ReduceMin's reduction (over no elements: the type's greatest value)."""
    return x.amin(dim=dims, keepdim=keep) if x.numel() else _of_nothing(x, dims, keep, lowest=False)


def _of_nothing(x, dims, keep, *, lowest: bool) -> torch.Tensor:
    """The max (min) over no elements: the type's least (greatest) value, as ONNX defines it."""
    shape = [1 if d in dims else n for d, n in enumerate(x.shape) if keep or d not in dims]
    info = torch.finfo(x.dtype) if x.is_floating_point() else torch.iinfo(x.dtype) if x.dtype != torch.bool else None
    value = (False if lowest else True) if info is None else float("-inf" if lowest else "inf") if x.is_floating_point() else (info.min if lowest else info.max)
    return torch.full(shape, value, dtype=x.dtype)


def prod(x, dims, keep):
    """ReduceProd's reduction (torch multiplies along one axis at a time)."""
    for d in dims:
        x = x.prod(dim=d, keepdim=True)
    return x if keep else x.squeeze(dims) if dims else x


def clip(node, opset, x, low=None, high=None):
    """Clip between its bounds (attributes before opset 11, inputs from it; either may be absent)."""
    if opset < 11:
        low, high = attr_float(node, "min", float("-inf")), attr_float(node, "max", float("inf"))
        return x.clamp(low, high)
    return x if low is None and high is None else x.clamp(low, high)


def softmax(node, opset, x):
    """Softmax along ``axis`` (before opset 13: over the flattened axes from ``axis`` on)."""
    axis = attr_int(node, "axis", -1 if opset >= 13 else 1)
    if opset >= 13:
        return x.softmax(dim=axis)
    flat = x.reshape(int(np.prod(x.shape[:positive_axis(axis, x.dim())])), -1)
    return flat.softmax(dim=1).reshape(x.shape)


def log_softmax(node, opset, x):
    """LogSoftmax along ``axis``."""
    return x.log_softmax(dim=attr_int(node, "axis", -1 if opset >= 13 else 1))


def gelu(node, opset, x):
    """Gelu, exact or with the tanh approximation."""
    return F.gelu(x, approximate="tanh" if node.attributes.get_string("approximate", "none") == "tanh" else "none")


def mod(node, opset, a, b):
    """Mod: the sign of the divisor (``fmod=0``) or of the dividend (``fmod=1``)."""
    return torch.fmod(a, b) if attr_int(node, "fmod", 0) else torch.remainder(a, b)


def variadic(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Op:
    """Max, Min and Sum over any number of inputs."""

    def run(node, opset, first, *rest):
        for x in rest:
            first = function(first, x)
        return first

    return run


def dropout(node, opset, x, ratio=None, training=None):
    """Dropout as inference runs it (the identity); its random training mode is declined."""
    if training is not None and bool(training.item()):
        raise untrainable("Dropout in training mode is not supported")
    return (x, torch.ones_like(x, dtype=torch.bool)) if len(node.outputs) > 1 else x


def arg_extreme(node, opset, x):
    """ArgMax and ArgMin, the first index of the extreme value or, with ``select_last_index``, the last."""
    axis, keep = positive_axis(attr_int(node, "axis", 0), x.dim()), bool(attr_int(node, "keepdims", 1))
    function = torch.argmax if node.op_type == "ArgMax" else torch.argmin
    if not attr_int(node, "select_last_index", 0):
        return function(x, dim=axis, keepdim=keep)
    return x.shape[axis] - 1 - function(x.flip(axis), dim=axis, keepdim=keep)


def cumsum(node, opset, x, axis):
    """CumSum along an axis, inclusive or ``exclusive``, forwards or in ``reverse``."""
    dim = positive_axis(int(axis.item()), x.dim())
    reverse = bool(attr_int(node, "reverse", 0))
    ordered = x.flip(dim) if reverse else x
    total = ordered.cumsum(dim=dim)
    total = total - ordered if attr_int(node, "exclusive", 0) else total
    return total.flip(dim) if reverse else total


def prelu(node, opset, x, slope):
    """PRelu: ``slope * x`` where x < 0, the slope broadcast to x."""
    return torch.where(x < 0, slope * x, x)


def selu(node, opset, x):
    """Selu with its ``alpha`` and ``gamma``."""
    alpha, gamma = attr_float(node, "alpha", 1.67326319217681884765625), attr_float(node, "gamma", 1.05070102214813232421875)
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


def celu(node, opset, x):
    """Celu with its ``alpha``."""
    return F.celu(x, attr_float(node, "alpha", 1.0))


def thresholded_relu(node, opset, x):
    """ThresholdedRelu: x where x > ``alpha``, else 0."""
    return torch.where(x > attr_float(node, "alpha", 1.0), x, torch.zeros_like(x))


def shrink(node, opset, x):
    """Shrink: x ∓ ``bias`` outside [-``lambd``, ``lambd``], 0 inside."""
    bias, lambd = attr_float(node, "bias", 0.0), attr_float(node, "lambd", 0.5)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, torch.zeros_like(x)))


def is_inf(node, opset, x):
    """IsInf, of either sign or only the ones ``detect_positive``/``detect_negative`` ask for."""
    positive, negative = attr_int(node, "detect_positive", 1), attr_int(node, "detect_negative", 1)
    return (torch.isposinf(x) & bool(positive)) | (torch.isneginf(x) & bool(negative))


def mean(node, opset, *operands):
    """Mean of any number of inputs, broadcast: their Sum over their count."""
    return variadic(torch.add)(node, opset, *operands) / len(operands)


def einsum(node, opset, *operands):
    """Einsum by its ``equation``."""
    return torch.einsum(node.attributes.get_string("equation").replace(" ", ""), *operands)
