"""Resize: nearest, linear and cubic resampling under ONNX's coordinate transforms, one axis at a time."""

from __future__ import annotations

import numpy as np
import torch

from onnxcompress.passes.training.torch_ops.attributes import attr_float, attr_int, attr_ints, int_values, positive_axis
from onnxcompress.passes.training.untrainable import untrainable


def resize(node, opset, x, roi=None, scales=None, sizes=None):
    """Resize, one axis at a time: nearest (every rounding), linear and cubic (``cubic_coeff_a``,
    ``exclude_outside``) under every coordinate transformation, ``tf_crop_and_resize``'s region and fill, and
    the ``axes`` attribute; indices past an edge read the edge, as ONNX's reference does. Declined: antialiasing
    when shrinking, and a ``keep_aspect_ratio_policy`` other than stretch."""
    mode = node.attributes.get_string("mode", "nearest")
    transform = node.attributes.get_string("coordinate_transformation_mode", "half_pixel")
    if node.attributes.get_string("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise untrainable("Resize with keep_aspect_ratio_policy other than stretch is not supported")
    axes = [positive_axis(a, x.dim()) for a in attr_ints(node, "axes", list(range(x.dim())))]
    given_sizes = int_values(sizes) if sizes is not None and sizes.numel() else None
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
        weights = _linear_weights(where - base) if mode == "linear" else _cubic_weights(where - base, attr_float(node, "cubic_coeff_a", -0.75))
        if mode == "cubic" and attr_int(node, "exclude_outside", 0):
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
        y = torch.where(outside, torch.tensor(attr_float(node, "extrapolation_value", 0.0), dtype=x.dtype), y)
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
