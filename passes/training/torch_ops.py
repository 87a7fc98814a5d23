"""ONNX operators as PyTorch functions: what lets a graph run, and be differentiated, in torch.

Each entry of ``OPS`` takes ``(node, opset, *inputs)`` (inputs are tensors or None for an omitted
optional input) and returns a tensor or a tuple of tensors, one per node output. Integer tensors
that ONNX passes as inputs but torch wants as Python values (shapes, axes, slice bounds) are read
with ``.tolist()``; their values come from ``Shape`` and friends on the same batch, so a graph
whose shapes follow its input keeps following it. An op missing here makes the graph untrainable;
``unsupported_ops`` names them before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
import torch.nn.functional as F

from onnxcompress.passes.training import fake_quant
from onnxcompress.passes.training.untrainable import untrainable

Op = Callable[..., Any]

DTYPES = {
    ir.DataType.FLOAT: torch.float32, ir.DataType.DOUBLE: torch.float64, ir.DataType.FLOAT16: torch.float16,
    ir.DataType.BFLOAT16: torch.bfloat16, ir.DataType.INT64: torch.int64, ir.DataType.INT32: torch.int32,
    ir.DataType.INT16: torch.int16, ir.DataType.INT8: torch.int8, ir.DataType.UINT8: torch.uint8, ir.DataType.BOOL: torch.bool,
}


def to_torch(array: object) -> torch.Tensor:
    """A numpy array (or tensor) as a tensor of its own: bfloat16 reinterpreted from its bits, a type torch has no
    tensor for (float8, int4, strings) declined in one line."""
    if isinstance(array, torch.Tensor):
        return array
    array = np.asarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(array).view(np.uint16).copy()).view(torch.bfloat16)
    try:
        return torch.from_numpy(np.array(array))
    except TypeError:
        raise untrainable(f"tensors of type {array.dtype} are not supported") from None


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as numpy holds them (bfloat16 widened to float32: numpy has no such type of its own)."""
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


def _ints(node: ir.Node, name: str, default: Any = None) -> Any:
    return node.attributes.get_ints(name, default)


def _int(node: ir.Node, name: str, default: int) -> int:
    return node.attributes.get_int(name, default)


def _float(node: ir.Node, name: str, default: float) -> float:
    return node.attributes.get_float(name, default)


def _values(tensor: torch.Tensor | None) -> list[int] | None:
    return None if tensor is None else [int(v) for v in tensor.reshape(-1).tolist()]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _pads(node: ir.Node, x: torch.Tensor, kernel: list[int]) -> list[int]:
    """ONNX ``pads`` (begins, then ends), worked out from the input's size under ``auto_pad=SAME_*``."""
    spatial = len(kernel)
    auto = node.attributes.get_string("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        return _ints(node, "pads", [0] * 2 * spatial) if auto == "NOTSET" else [0] * 2 * spatial
    strides, dilations = _ints(node, "strides", [1] * spatial), _ints(node, "dilations", [1] * spatial)
    sizes = x.shape[2:]
    totals = [max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n) for n, s, k, d in zip(sizes, strides, kernel, dilations, strict=True)]
    smaller = [t // 2 for t in totals]
    begins = smaller if auto == "SAME_UPPER" else [t - h for t, h in zip(totals, smaller, strict=True)]
    return begins + [t - b for t, b in zip(totals, begins, strict=True)]


def _padded(x: torch.Tensor, pads: list[int], value: float = 0.0) -> torch.Tensor:
    """``x`` padded by ONNX ``pads`` (begins then ends over the trailing axes)."""
    half = len(pads) // 2
    return F.pad(x, [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])], value=value)


def conv(node, opset, x, w, b=None):
    group = _int(node, "group", 1)
    if w.shape[0] == 0:  # every output channel pruned away: ONNX gives an empty tensor, torch refuses the weight
        return conv(node, opset, x, torch.zeros((group, *w.shape[1:]), dtype=w.dtype))[:, :0]
    spatial = w.dim() - 2
    pads = _pads(node, x, list(w.shape[2:]))
    symmetric = pads[:spatial] == pads[spatial:]
    x = x if symmetric else _padded(x, pads)
    function = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    return function(x, w, b, _ints(node, "strides", [1] * spatial), pads[:spatial] if symmetric else 0,
                    _ints(node, "dilations", [1] * spatial), group)


def gemm(node, opset, a, b, c=None):
    a = a.transpose(0, 1) if _int(node, "transA", 0) else a
    b = b.transpose(0, 1) if _int(node, "transB", 0) else b
    y = _float(node, "alpha", 1.0) * (a @ b)
    return y if c is None else y + _float(node, "beta", 1.0) * c


def batch_norm(node, opset, x, scale, bias, mean, var):
    if _int(node, "training_mode", 0):
        raise untrainable("BatchNormalization in training mode is not supported")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    eps = _float(node, "epsilon", 1e-5)
    return (x - mean.reshape(shape)) / (var.reshape(shape) + eps).sqrt() * scale.reshape(shape) + bias.reshape(shape)


def layer_norm(node, opset, x, scale, bias=None):
    axis = _axis(_int(node, "axis", -1), x.dim())
    dims = tuple(range(axis, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    inverse = (var + _float(node, "epsilon", 1e-5)).rsqrt()
    y = (x - mean) * inverse * scale
    return (y if bias is None else y + bias), mean, inverse


def pool(node, opset, x):
    """MaxPool and AveragePool with any pads (asymmetric, wider than half the kernel), dilations and ceil_mode:
    the input is padded explicitly (ceil_mode's extra windows included), and an average divides each window's sum
    by the elements it counts (the pads too when ``count_include_pad``, never ceil_mode's overhang)."""
    kernel = _ints(node, "kernel_shape")
    spatial = len(kernel)
    strides, dilations = _ints(node, "strides", [1] * spatial), _ints(node, "dilations", [1] * spatial)
    pads = list(_pads(node, x, kernel))
    overhang = _ceil_overhang(list(x.shape[2:]), kernel, strides, dilations, pads) if _int(node, "ceil_mode", 0) else [0] * spatial
    around = pads[:spatial] + [end + extra for end, extra in zip(pads[spatial:], overhang, strict=True)]
    if node.op_type == "MaxPool":
        if len(node.outputs) > 1 and node.outputs[1] is not None and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            raise untrainable("MaxPool's Indices output is not supported")
        function = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[spatial]
        lowest = float("-inf") if x.is_floating_point() else torch.iinfo(x.dtype).min
        return function(_padded(x, around, lowest), kernel, strides, 0, dilations)
    convolve = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    window = torch.ones((1, 1, *kernel), dtype=x.dtype)
    channels = x.shape[1]
    sums = convolve(_padded(x, around), window.expand(channels, 1, *kernel), None, strides, 0, dilations, channels)
    counted = _padded(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype), pads, 1.0 if _int(node, "count_include_pad", 0) else 0.0)
    counts = convolve(_padded(counted, [0] * spatial + overhang), window, None, strides, 0, dilations)
    return sums / counts


def lrn(node, opset, x):
    """LRN: each element divided by (bias + alpha / size * the sum of squares over ``size`` neighbouring channels)
    ** beta, the window reaching floor((size - 1) / 2) channels back and the rest forward, as ONNX defines it."""
    size = _int(node, "size", 1)
    back = (size - 1) // 2
    squares = F.pad(x.pow(2).unsqueeze(1), [0, 0] * (x.dim() - 2) + [back, size - 1 - back]).squeeze(1)
    window = squares.unfold(1, size, 1).sum(dim=-1)
    return x / (_float(node, "bias", 1.0) + _float(node, "alpha", 1e-4) / size * window).pow(_float(node, "beta", 0.75))


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


def reshape(node, opset, x, shape):
    dims = _values(shape)
    if not _int(node, "allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def flatten(node, opset, x):
    axis = _axis(_int(node, "axis", 1), x.dim())
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def transpose(node, opset, x):
    return x.permute(_ints(node, "perm", list(reversed(range(x.dim())))))


def _axes_of(node, opset, axes_input, since: int) -> list[int] | None:
    return _values(axes_input) if opset >= since else _ints(node, "axes", None)


def unsqueeze(node, opset, x, axes=None):
    wanted = _axes_of(node, opset, axes, 13)
    rank = x.dim() + len(wanted)
    for axis in sorted(_axis(a, rank) for a in wanted):
        x = x.unsqueeze(axis)
    return x


def squeeze(node, opset, x, axes=None):
    wanted = _axes_of(node, opset, axes, 13)
    if wanted is None:
        return x.squeeze()
    for axis in sorted((_axis(a, x.dim()) for a in wanted), reverse=True):
        x = x.squeeze(axis)
    return x


def reduce(function: Callable[..., torch.Tensor], axes_input_since: int) -> Op:
    """A Reduce* op whose axes moved from attribute to input at opset ``axes_input_since``."""

    def run(node, opset, x, axes=None):
        wanted = _axes_of(node, opset, axes, axes_input_since)
        keep = bool(_int(node, "keepdims", 1))
        if not wanted:
            if _int(node, "noop_with_empty_axes", 0):
                return x
            wanted = list(range(x.dim()))
        return function(x, tuple(_axis(a, x.dim()) for a in wanted), keep)

    return run


def _amax(x, dims, keep):
    return x.amax(dim=dims, keepdim=keep) if x.numel() else _of_nothing(x, dims, keep, lowest=True)


def _amin(x, dims, keep):
    return x.amin(dim=dims, keepdim=keep) if x.numel() else _of_nothing(x, dims, keep, lowest=False)


def _of_nothing(x, dims, keep, *, lowest: bool) -> torch.Tensor:
    """The max (min) over no elements: the type's least (greatest) value, as ONNX defines it."""
    shape = [1 if d in dims else n for d, n in enumerate(x.shape) if keep or d not in dims]
    info = torch.finfo(x.dtype) if x.is_floating_point() else torch.iinfo(x.dtype) if x.dtype != torch.bool else None
    value = (False if lowest else True) if info is None else float("-inf" if lowest else "inf") if x.is_floating_point() else (info.min if lowest else info.max)
    return torch.full(shape, value, dtype=x.dtype)


def gather(node, opset, data, indices):
    axis = _axis(_int(node, "axis", 0), data.dim())
    index = indices.long()
    index = torch.where(index < 0, index + data.shape[axis], index)
    picked = data.index_select(axis, index.reshape(-1))
    return picked.reshape((*data.shape[:axis], *index.shape, *data.shape[axis + 1:]))


def gather_nd(node, opset, data, indices):
    if _int(node, "batch_dims", 0):
        raise untrainable("GatherND with batch_dims is not supported")
    index = indices.long()
    return data[tuple(index[..., i] for i in range(index.shape[-1]))]


def slice_(node, opset, data, starts=None, ends=None, axes=None, steps=None):
    if opset < 10:
        starts, ends, axes = _ints(node, "starts"), _ints(node, "ends"), _ints(node, "axes", None)
        steps = None
    else:
        starts, ends, axes, steps = _values(starts), _values(ends), _values(axes), _values(steps)
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = _axis(axis, data.dim())
        kept = range(*slice(start, end, step).indices(data.shape[axis]))
        data = data.index_select(axis, torch.tensor(kept, dtype=torch.int64))
    return data


def split(node, opset, x, sizes=None):
    axis = _axis(_int(node, "axis", 0), x.dim())
    parts = _values(sizes) if opset >= 13 else _ints(node, "split", None)
    if parts is None:
        count = len(node.outputs)
        chunk = -(-x.shape[axis] // count)
        parts = [min(chunk, x.shape[axis] - i * chunk) for i in range(count)]
    return tuple(torch.split(x, parts, dim=axis))


def concat(node, opset, *xs):
    return torch.cat([x for x in xs if x is not None], dim=_int(node, "axis", 0))


def cast(node, opset, x):
    target = ir.DataType(_int(node, "to", 1))
    if target not in DTYPES:
        raise untrainable(f"Cast to {target.name} is not supported")
    return x.to(DTYPES[target])


def expand(node, opset, x, shape):
    return x.expand(torch.broadcast_shapes(x.shape, tuple(_values(shape))))


def tile(node, opset, x, repeats):
    return x.repeat(_values(repeats))


def constant_of_shape(node, opset, shape):
    value = node.attributes.get("value")
    array = value.as_tensor().numpy() if value is not None else np.zeros(1, np.float32)
    return torch.full(tuple(_values(shape)), array.reshape(-1)[0].item(), dtype=DTYPES[ir.DataType.from_numpy(array.dtype)])


def range_(node, opset, start, limit, delta):
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def shape(node, opset, x):
    dims = torch.tensor(list(x.shape), dtype=torch.int64)
    start, end = _int(node, "start", 0), node.attributes.get_int("end", None)
    return dims[start:end]


def clip(node, opset, x, low=None, high=None):
    if opset < 11:
        low, high = _float(node, "min", float("-inf")), _float(node, "max", float("inf"))
        return x.clamp(low, high)
    return x if low is None and high is None else x.clamp(low, high)


def softmax(node, opset, x):
    axis = _int(node, "axis", -1 if opset >= 13 else 1)
    if opset >= 13:
        return x.softmax(dim=axis)
    flat = x.reshape(int(np.prod(x.shape[:_axis(axis, x.dim())])), -1)
    return flat.softmax(dim=1).reshape(x.shape)


def log_softmax(node, opset, x):
    return x.log_softmax(dim=_int(node, "axis", -1 if opset >= 13 else 1))


def gelu(node, opset, x):
    return F.gelu(x, approximate="tanh" if node.attributes.get_string("approximate", "none") == "tanh" else "none")


def pad(node, opset, x, pads=None, value=None, axes=None):
    widths = _values(pads) if opset >= 11 else _ints(node, "pads")
    if axes is not None:  # widths for the listed axes only: spread them over every axis
        listed = [_axis(a, x.dim()) for a in _values(axes)]
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


def resize(node, opset, x, roi=None, scales=None, sizes=None):
    """Resize, one axis at a time: nearest (every rounding), linear and cubic (``cubic_coeff_a``,
    ``exclude_outside``) under every coordinate transformation, ``tf_crop_and_resize``'s region and fill, and
    the ``axes`` attribute; indices past an edge read the edge, as ONNX's reference does. Declined: antialiasing
    when shrinking, and a ``keep_aspect_ratio_policy`` other than stretch."""
    mode = node.attributes.get_string("mode", "nearest")
    transform = node.attributes.get_string("coordinate_transformation_mode", "half_pixel")
    if node.attributes.get_string("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise untrainable("Resize with keep_aspect_ratio_policy other than stretch is not supported")
    axes = [_axis(a, x.dim()) for a in _ints(node, "axes", list(range(x.dim())))]
    given_sizes = _values(sizes) if sizes is not None and sizes.numel() else None
    given_scales = None if given_sizes else [float(v) for v in scales.reshape(-1).tolist()]
    region = [float(v) for v in roi.reshape(-1).tolist()] if roi is not None and roi.numel() else None
    for i, axis in enumerate(axes):
        size = x.shape[axis]
        start, end = (region[i], region[i + len(axes)]) if region and transform == "tf_crop_and_resize" else (0.0, 1.0)
        out = given_sizes[i] if given_sizes else int(np.floor(size * (end - start) * given_scales[i]))
        scale = out / size if given_sizes else given_scales[i]
        if out == size and scale == 1.0 and transform != "tf_crop_and_resize":
            continue
        if node.attributes.get_int("antialias", 0) and scale < 1 and mode != "nearest":
            raise untrainable("Resize with antialias when shrinking is not supported")
        where = _source_coordinates(transform, size, out, scale, start, end)
        x = _resample_axis(node, mode, x, axis, where, extrapolate=transform == "tf_crop_and_resize")
    return x


def _source_coordinates(transform: str, size: int, out: int, scale: float, start: float, end: float) -> np.ndarray:
    """Where in the input each of the ``out`` outputs along one axis reads from (ONNX's coordinate transforms; the
    resized length they divide by is ``scale`` times the input's, before rounding, as in ONNX's reference)."""
    index = np.arange(out, dtype=np.float64)
    length = scale * size
    if transform == "half_pixel":
        return (index + 0.5) / scale - 0.5
    if transform == "half_pixel_symmetric":
        adjustment = out / (scale * size)
        return size / 2 * (1 - adjustment) + (index + 0.5) / scale - 0.5
    if transform == "pytorch_half_pixel":
        return (index + 0.5) / scale - 0.5 if length > 1 else np.zeros(out)
    if transform == "align_corners":
        return index * (size - 1) / (length - 1) if length != 1 else np.zeros(out)
    if transform == "asymmetric":
        return index / scale
    if transform == "tf_half_pixel_for_nn":
        return (index + 0.5) / scale
    if transform == "tf_crop_and_resize":
        if length != 1:
            return start * (size - 1) + index * (end - start) * (size - 1) / (length - 1)
        return np.full(out, 0.5 * (start + end) * (size - 1))
    raise untrainable(f"Resize coordinate_transformation_mode={transform} is not supported")


def _resample_axis(node, mode: str, x: torch.Tensor, axis: int, where: np.ndarray, *, extrapolate: bool) -> torch.Tensor:
    """``x`` read at ``where`` along ``axis``: the nearest element, or a weighted sum of 2 (linear) or 4 (cubic)."""
    size = x.shape[axis]
    if mode == "nearest":
        rounding = node.attributes.get_string("nearest_mode", "round_prefer_floor")
        rounded = {"round_prefer_floor": np.ceil(where - 0.5), "round_prefer_ceil": np.floor(where + 0.5),
                   "floor": np.floor(where), "ceil": np.ceil(where)}[rounding]
        taps, weights = rounded[:, None], np.ones((len(where), 1))
    elif mode in ("linear", "cubic"):
        base = np.floor(where)
        offsets = np.array([0, 1]) if mode == "linear" else np.array([-1, 0, 1, 2])
        taps = base[:, None] + offsets
        weights = _linear_weights(where - base) if mode == "linear" else _cubic_weights(where - base, _float(node, "cubic_coeff_a", -0.75))
        if mode == "cubic" and _int(node, "exclude_outside", 0):
            weights = np.where((taps >= 0) & (taps < size), weights, 0.0)
            weights = weights / weights.sum(axis=1, keepdims=True)
    else:
        raise untrainable(f"Resize mode={mode} is not supported")
    picked = x.index_select(axis, torch.from_numpy(np.clip(taps, 0, size - 1).astype(np.int64).reshape(-1)))
    picked = picked.reshape(*x.shape[:axis], len(where), taps.shape[1], *x.shape[axis + 1:])
    shape = [1] * axis + [len(where), taps.shape[1]] + [1] * (x.dim() - axis - 1)
    y = (picked * torch.from_numpy(weights).to(x.dtype).reshape(shape)).sum(dim=axis + 1)
    if extrapolate:
        outside = torch.from_numpy((where < 0) | (where > size - 1)).reshape(shape[:axis + 1] + shape[axis + 2:])
        y = torch.where(outside, torch.tensor(_float(node, "extrapolation_value", 0.0), dtype=x.dtype), y)
    return y


def _linear_weights(fraction: np.ndarray) -> np.ndarray:
    return np.stack([1 - fraction, fraction], axis=1)


def _cubic_weights(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution weights of the 4 taps around a point ``t`` past the second of them."""
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


def trilu(node, opset, x, k=None):
    offset = int(k.item()) if k is not None else 0
    return torch.triu(x, offset) if _int(node, "upper", 1) else torch.tril(x, offset)


def where(node, opset, condition, a, b):
    return torch.where(condition.bool(), a, b)


def mod(node, opset, a, b):
    return torch.fmod(a, b) if _int(node, "fmod", 0) else torch.remainder(a, b)


def attention(node, opset, q, k, v, mask=None, past_key=None, past_value=None, nonpad=None):
    """ONNX Attention (opset 23+; what PyTorch's exporter writes for scaled_dot_product_attention at opset 23):
    3-D inputs split into heads, a past key/value cache, grouped-query heads, an additive or boolean mask, causal
    and sliding-window masks aligned after the cache, softcap; outputs Y, the present key and value, and the
    QK product in the stage ``qk_matmul_output_mode`` names."""
    three_d = q.dim() == 3
    if three_d:
        kv_heads = _int(node, "kv_num_heads", 0)
        q, k, v = _split_heads(q, _int(node, "q_num_heads", 0)), _split_heads(k, kv_heads), _split_heads(v, kv_heads)
    if past_key is not None:
        k, v = torch.cat([past_key, k], dim=2), torch.cat([past_value, v], dim=2)
    present_key, present_value = k, v
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves q_heads / kv_heads query heads
        k, v = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1), v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scale = node.attributes.get_float("scale", None)
    root = torch.tensor((1 / float(np.sqrt(q.shape[-1])) if scale is None else scale) ** 0.5, dtype=q.dtype)
    scores = (q * root) @ (k * root).transpose(-1, -2)
    softcap = _float(node, "softcap", 0.0)
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    bias = _attention_bias(node, q, k, mask, past_key, nonpad)
    with_bias = scores + bias
    blocked = torch.isneginf(bias.amax(dim=-1, keepdim=True))  # a query no key may reach gives 0, not NaN
    weights = torch.where(blocked, 0.0, torch.where(blocked, 0.0, with_bias).float().softmax(dim=-1)).to(q.dtype)
    y = weights @ v
    if three_d:
        y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
    mode = _int(node, "qk_matmul_output_mode", 0)
    return y, present_key, present_value, {0: scores, 1: scores, 2: with_bias, 3: weights}[mode]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
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
    left, right = _int(node, "left_window_size", -1), _int(node, "right_window_size", -1)
    if _int(node, "is_causal", 0):
        allowed = allowed & (behind >= 0)
    if left >= 0:
        allowed = allowed & (behind <= left)
    if right >= 0:
        allowed = allowed & (-behind <= right)
    bias = bias + torch.where(allowed, 0.0, blocked).to(q.dtype)
    if nonpad is not None:
        bias = bias + torch.where(torch.arange(keys).reshape(1, 1, 1, -1) < nonpad.reshape(-1, 1, 1, 1), 0.0, blocked).to(q.dtype)
    return bias


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
    axis, keep = _axis(_int(node, "axis", 0), x.dim()), bool(_int(node, "keepdims", 1))
    function = torch.argmax if node.op_type == "ArgMax" else torch.argmin
    if not _int(node, "select_last_index", 0):
        return function(x, dim=axis, keepdim=keep)
    return x.shape[axis] - 1 - function(x.flip(axis), dim=axis, keepdim=keep)


def cumsum(node, opset, x, axis):
    dim = _axis(int(axis.item()), x.dim())
    reverse = bool(_int(node, "reverse", 0))
    ordered = x.flip(dim) if reverse else x
    total = ordered.cumsum(dim=dim)
    total = total - ordered if _int(node, "exclusive", 0) else total
    return total.flip(dim) if reverse else total


def _unary(function: Callable[[torch.Tensor], torch.Tensor]) -> Op:
    return lambda node, opset, x: function(x)


def _binary(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Op:
    return lambda node, opset, a, b: function(a, b)


OPS: dict[str, Op] = {
    "Conv": conv, "Gemm": gemm, "MatMul": _binary(torch.matmul), "BatchNormalization": batch_norm,
    "LayerNormalization": layer_norm, "MaxPool": pool, "AveragePool": pool, "LRN": lrn,
    "GlobalAveragePool": _unary(lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)),
    "GlobalMaxPool": _unary(lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)),
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul),
    "Div": _binary(lambda a, b: torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point() else a / b),
    "Pow": _binary(torch.pow), "Mod": mod, "Equal": _binary(torch.eq), "Greater": _binary(torch.gt), "Less": _binary(torch.lt),
    "GreaterOrEqual": _binary(torch.ge), "LessOrEqual": _binary(torch.le), "And": _binary(torch.logical_and),
    "Or": _binary(torch.logical_or), "Not": _unary(torch.logical_not), "Where": where,
    "Max": variadic(torch.maximum), "Min": variadic(torch.minimum), "Sum": variadic(torch.add),
    "Relu": _unary(torch.relu), "Sigmoid": _unary(torch.sigmoid), "Tanh": _unary(torch.tanh), "Erf": _unary(torch.erf),
    "Exp": _unary(torch.exp), "Log": _unary(torch.log), "Sqrt": _unary(torch.sqrt), "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs), "Reciprocal": _unary(torch.reciprocal), "Floor": _unary(torch.floor), "Ceil": _unary(torch.ceil),
    "Softplus": _unary(F.softplus), "Identity": _unary(lambda x: x), "Dropout": dropout,
    "LeakyRelu": lambda node, opset, x: F.leaky_relu(x, _float(node, "alpha", 0.01)),
    "Elu": lambda node, opset, x: F.elu(x, _float(node, "alpha", 1.0)),
    "HardSigmoid": lambda node, opset, x: (_float(node, "alpha", 0.2) * x + _float(node, "beta", 0.5)).clamp(0, 1),
    "HardSwish": _unary(lambda x: x * (x / 6 + 0.5).clamp(0, 1)), "Gelu": gelu, "Softmax": softmax, "LogSoftmax": log_softmax,
    "Clip": clip, "Reshape": reshape, "Flatten": flatten, "Transpose": transpose, "Unsqueeze": unsqueeze, "Squeeze": squeeze,
    "ReduceMean": reduce(lambda x, d, k: x.mean(dim=d, keepdim=k), 18), "ReduceSum": reduce(lambda x, d, k: x.sum(dim=d, keepdim=k), 13),
    "ReduceL2": reduce(lambda x, d, k: x.pow(2).sum(dim=d, keepdim=k).sqrt(), 18),
    "ReduceSumSquare": reduce(lambda x, d, k: x.pow(2).sum(dim=d, keepdim=k), 18),
    "ReduceMax": reduce(_amax, 18), "ReduceMin": reduce(_amin, 18), "Gather": gather, "GatherND": gather_nd, "Slice": slice_,
    "Split": split, "Concat": concat, "Cast": cast, "Expand": expand, "Tile": tile, "ConstantOfShape": constant_of_shape,
    "Range": range_, "Shape": shape, "Size": lambda node, opset, x: torch.tensor(x.numel(), dtype=torch.int64),
    "Pad": pad, "Resize": resize, "Trilu": trilu, "ArgMax": arg_extreme, "ArgMin": arg_extreme, "CumSum": cumsum, "Attention": attention,
    "QuantizeLinear": fake_quant.quantize_linear, "DequantizeLinear": fake_quant.dequantize_linear,
}


def scaler(node, opset, x):
    """ai.onnx.ml Scaler (scikit-learn's StandardScaler as skl2onnx writes it): ``(x - offset) * scale``."""
    offset = torch.tensor(_floats(node, "offset"), dtype=torch.float32)
    scale = torch.tensor(_floats(node, "scale"), dtype=torch.float32)
    return (x.float() - offset) * scale


def _floats(node: ir.Node, name: str) -> list[float]:
    attribute = node.attributes.get(name)
    return [1.0] if attribute is None else list(attribute.as_floats())


def array_feature_extractor(node, opset, x, indices):
    """ai.onnx.ml ArrayFeatureExtractor: ``x``'s elements at ``indices`` along its last axis (a 1-D ``x`` gives one
    row, as ONNX Runtime does): how skl2onnx turns an ArgMax into class labels."""
    picked = x.index_select(-1, indices.reshape(-1).long())
    return picked.unsqueeze(0) if x.dim() == 1 else picked


def normalizer(node, opset, x):
    """ai.onnx.ml Normalizer: each row divided by its largest value (MAX), its L1 or its L2 norm."""
    x = x.float()
    norm = node.attributes["norm"].as_string() if "norm" in node.attributes else "MAX"
    if norm == "MAX":
        return x / x.amax(dim=-1, keepdim=True)
    return x / (x.abs().sum(dim=-1, keepdim=True) if norm == "L1" else x.pow(2).sum(dim=-1, keepdim=True).sqrt())


ML_OPS: dict[str, Op] = {"Scaler": scaler, "ArrayFeatureExtractor": array_feature_extractor, "Normalizer": normalizer}
DOMAINS: dict[str, dict[str, Op]] = {"": OPS, "ai.onnx": OPS, "ai.onnx.ml": ML_OPS}


def op(node: ir.Node) -> Op | None:
    """What runs ``node`` in torch (by its domain and op type), or None."""
    return DOMAINS.get(node.domain, {}).get(node.op_type)


def unsupported_ops(nodes: Iterable[ir.Node]) -> list[str]:
    """The op types among ``nodes`` that cannot run in torch (outside the default domain named with theirs), sorted."""
    return sorted({f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                   for n in nodes if n.op_type != "Constant" and op(n) is None})
