"""Ops over spatial windows: Conv, MaxPool and AveragePool, LRN, and Pad (explicit padding, as ONNX writes it)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import torch
import torch.nn.functional as F

from onnxcompress.passes.training.torch_ops.attributes import attr_float, attr_int, attr_ints, int_values, positive_axis
from onnxcompress.passes.training.untrainable import untrainable

CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}  # by spatial rank
MAX_POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVERAGE_POOLS = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def conv_pads(node: ir.Node, x: torch.Tensor, kernel: list[int]) -> list[int]:
    """ONNX ``pads`` (begins, then ends), worked out from the input's size under ``auto_pad=SAME_*``."""
    spatial = len(kernel)
    auto = node.attributes.get_string("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        return attr_ints(node, "pads", [0] * 2 * spatial) if auto == "NOTSET" else [0] * 2 * spatial
    strides, dilations = attr_ints(node, "strides", [1] * spatial), attr_ints(node, "dilations", [1] * spatial)
    sizes = x.shape[2:]
    totals = [max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n) for n, s, k, d in zip(sizes, strides, kernel, dilations, strict=True)]
    smaller = [t // 2 for t in totals]
    begins = smaller if auto == "SAME_UPPER" else [t - h for t, h in zip(totals, smaller, strict=True)]
    return begins + [t - b for t, b in zip(totals, begins, strict=True)]


def padded(x: torch.Tensor, pads: list[int], value: float = 0.0) -> torch.Tensor:
    """``x`` padded by ONNX ``pads`` (begins then ends over the trailing axes)."""
    half = len(pads) // 2
    return F.pad(x, [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])], value=value)


def conv(node, opset, x, w, b=None):
    """Conv in 1 to 3 spatial dims with groups, dilations and any pads (asymmetric ones applied explicitly)."""
    group = attr_int(node, "group", 1)
    if w.shape[0] == 0:  # every output channel pruned away: ONNX gives an empty tensor, torch refuses the weight
        return conv(node, opset, x, torch.zeros((group, *w.shape[1:]), dtype=w.dtype))[:, :0]
    spatial = w.dim() - 2
    pads = conv_pads(node, x, list(w.shape[2:]))
    symmetric = pads[:spatial] == pads[spatial:]
    x = x if symmetric else padded(x, pads)
    return CONVOLUTIONS[spatial](x, w, b, attr_ints(node, "strides", [1] * spatial), pads[:spatial] if symmetric else 0,
                                 attr_ints(node, "dilations", [1] * spatial), group)


def pool(node, opset, x):
    """MaxPool and AveragePool with any pads (asymmetric, wider than half the kernel), dilations and ceil_mode:
    the input is padded explicitly (ceil_mode's extra windows included), and an average divides each window's sum
    by the elements it counts (the pads too when ``count_include_pad``, never ceil_mode's overhang)."""
    kernel = attr_ints(node, "kernel_shape")
    spatial = len(kernel)
    strides, dilations = attr_ints(node, "strides", [1] * spatial), attr_ints(node, "dilations", [1] * spatial)
    pads = list(conv_pads(node, x, kernel))
    kernel = _within_input(kernel, list(x.shape[2:]), pads, dilations)
    overhang = _ceil_overhang(list(x.shape[2:]), kernel, strides, dilations, pads) if attr_int(node, "ceil_mode", 0) else [0] * spatial
    around = pads[:spatial] + [end + extra for end, extra in zip(pads[spatial:], overhang, strict=True)]
    if node.op_type == "MaxPool":
        if len(node.outputs) > 1 and node.outputs[1] is not None and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            raise untrainable("MaxPool's Indices output is not supported")
        lowest = float("-inf") if x.is_floating_point() else torch.iinfo(x.dtype).min
        return MAX_POOLS[spatial](padded(x, around, lowest), kernel, strides, 0, dilations)
    counted = padded(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype), pads, 1.0 if attr_int(node, "count_include_pad", 0) else 0.0)
    counted = padded(counted, [0] * spatial + overhang)
    return _window_means(padded(x, around), kernel, strides, dilations) / _window_means(counted, kernel, strides, dilations)


def _within_input(kernel: list[int], sizes: list[int], pads: list[int], dilations: list[int]) -> list[int]:
    """The kernel cut to the padded input where it is wider (undilated axes): its windows hold the same elements, and
    ceil_mode's overhang is not materialised. PyTorch's dynamo export pools EfficientNet's 7x7 map with a 640x640
    kernel, whose overhang padded a batch of 32 to 33 GB."""
    spatial = len(kernel)
    return [min(k, n + pads[i] + pads[i + spatial]) if d == 1 else k
            for i, (k, n, d) in enumerate(zip(kernel, sizes, dilations, strict=True))]


def _window_means(x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int]) -> torch.Tensor:
    """The mean of each pooling window over every element it spans (torch's own pooling without dilations, about
    1.4x faster to train through; a depthwise convolution of ones with them)."""
    if all(d == 1 for d in dilations):
        return AVERAGE_POOLS[len(kernel)](x, kernel, strides)
    window = torch.full((x.shape[1], 1, *kernel), 1.0 / float(np.prod(kernel)), dtype=x.dtype)
    return CONVOLUTIONS[len(kernel)](x, window, None, strides, 0, dilations, x.shape[1])


def lrn(node, opset, x):
    """LRN: each element divided by (bias + alpha / size * the sum of squares over ``size`` neighbouring channels)
    ** beta, the window reaching floor((size - 1) / 2) channels back and the rest forward, as ONNX defines it."""
    size = attr_int(node, "size", 1)
    back = (size - 1) // 2
    squares = F.pad(x.pow(2).unsqueeze(1), [0, 0] * (x.dim() - 2) + [back, size - 1 - back]).squeeze(1)
    window = squares.unfold(1, size, 1).sum(dim=-1)
    return x / (attr_float(node, "bias", 1.0) + attr_float(node, "alpha", 1e-4) / size * window).pow(attr_float(node, "beta", 0.75))


def _ceil_overhang(sizes: list[int], kernel: list[int], strides: list[int], dilations: list[int], pads: list[int]) -> list[int]:
    """How far ceil_mode's last window reaches past the padded input, per axis (0 where it does not); a window
    that would start past the input and its leading pad is not made, as ONNX's reference drops it."""
    spatial, overhang = len(kernel), []
    for axis, (size, k, stride, dilation) in enumerate(zip(sizes, kernel, strides, dilations, strict=True)):
        padded, reach = size + pads[axis] + pads[axis + spatial], (k - 1) * dilation + 1
        count = -(-(padded - reach) // stride) + 1
        if (count - 1) * stride >= size + pads[axis]:
            count -= 1
        overhang.append(max(0, (count - 1) * stride + reach - padded))
    return overhang


def pad(node, opset, x, pads=None, value=None, axes=None):
    """Pad: constant, reflect, edge or wrap, over every axis or the given ``axes``."""
    widths = int_values(pads) if opset >= 11 else attr_ints(node, "pads")
    if axes is not None:  # widths for the listed axes only: spread them over every axis
        listed = [positive_axis(a, x.dim()) for a in int_values(axes)]
        full = [0] * 2 * x.dim()
        for i, axis in enumerate(listed):
            full[axis], full[axis + x.dim()] = widths[i], widths[i + len(listed)]
        widths = full
    mode = node.attributes.get_string("mode", "constant")
    fill = float(value.item()) if value is not None and value.numel() else 0.0
    half = len(widths) // 2
    torch_pads = [p for i in reversed(range(half)) for p in (widths[i], widths[i + half])]
    if mode == "constant":
        return F.pad(x, torch_pads, value=fill)
    if any(torch_pads[2 * (x.dim() - 2):]):
        raise untrainable(f"Pad mode={mode} on the batch or channel axis is not supported")
    return F.pad(x, torch_pads[: 2 * (x.dim() - 2)], mode={"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode])
