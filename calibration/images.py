"""Calibration batches from a folder of images (PNG/JPEG/BMP via Pillow, or ``.npy`` arrays).

Each image is decoded only when its batch is built, resized to the model's height and width,
scaled to [0, 1], normalised with the given mean/std and laid out NCHW or NHWC, so memory holds one
batch however many files the folder has. Pillow is imported lazily, only when an image file is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxcompress import io
from onnxcompress.calibration.validation import model_inputs, shape_label
from onnxcompress.errors import UsageError
from onnxcompress.synthetic_inputs import image_axes, input_shapes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
ARRAY_SUFFIXES = {".npy"}
LAYOUTS = ("NCHW", "NHWC")


class ImageFolderReader:
    """Batches of ``batch_size`` images from ``folder`` (sorted by name), one float32 input."""

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        input_name: str,
        size: tuple[int, int],
        channels: int = 3,
        layout: str = "NCHW",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        batch_size: int = 32,
        size_chosen: bool = False,
    ) -> None:
        layout = _layout(layout)
        if channels not in (1, 3):
            raise UsageError(f"images must have 1 or 3 channels, got {channels}")
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        self.folder = Path(folder)
        self.files = image_files(self.folder)
        self.input_names = [input_name]
        self.size, self.channels, self.layout, self.batch_size = tuple(size), channels, layout, batch_size
        self.size_chosen = size_chosen  # the model leaves its height and width dynamic: ``size`` is a choice
        self.mean = _per_channel(mean, 0.0, channels, "mean")
        self.std = _per_channel(std, 1.0, channels, "std")
        if np.any(self.std == 0):
            raise UsageError("image std must not contain zeros")

    @classmethod
    def for_model(
        cls, folder: str | os.PathLike, model: ir.Model, *, size: tuple[int, int] | None = None, layout: str | None = None, **options,
    ) -> ImageFolderReader:
        """A reader shaped for the model's single image input ([N, C, H, W] or [N, H, W, C], C = 1 or 3).

        ``layout`` (NCHW or NHWC, any case) and ``size`` (height, width) default to what the input declares, and
        where it leaves them dynamic (Optimum's ``[batch_size, num_channels, height, width]``) to what synthetic
        inputs take there: the input channels of the ``Conv`` reading it, a 224 side rounded up to the graph's
        stride. ``options`` (``mean``, ``std``, ``batch_size``) go to the reader.
        """
        inputs = model_inputs(model)
        if len(inputs) != 1 or inputs[0].shape is None or len(inputs[0].shape) != 4:
            raise UsageError("an image folder can only calibrate a model with one 4-D image input")
        value = inputs[0]
        declared = list(value.shape)
        image_like = bool(image_axes(value))  # synthetic inputs know its channels and sides
        dims = [d if isinstance(d, int) or not image_like else chosen for d, chosen in zip(declared, input_shapes(model)[value.name])]
        layout = _layout(layout) if layout is not None else "NCHW" if dims[1] in (1, 3) else "NHWC" if dims[3] in (1, 3) else None
        if layout is None:
            raise UsageError(f"input {value.name!r} of shape {shape_label(declared)} has no axis of 1 or 3 channels; give the layout (--layout nchw|nhwc)")
        channels = dims[1] if layout == "NCHW" else dims[3]
        channels = channels if isinstance(channels, int) else 3
        if channels not in (1, 3):
            raise UsageError(f"input {value.name!r} of shape {shape_label(declared)} has {channels} channels in layout {layout}; images give 1 or 3")
        sides = slice(2, 4) if layout == "NCHW" else slice(1, 3)
        chosen = size is None and not all(isinstance(d, int) for d in declared[sides])
        size = tuple(size) if size is not None else tuple(dims[sides])
        if not all(isinstance(d, int) for d in size):
            raise UsageError(f"input {value.name!r} of shape {shape_label(declared)} has a dynamic height or width; give the image size (--image-size H,W)")
        return cls(folder, input_name=value.name, size=size, channels=channels, layout=layout, size_chosen=chosen, **options)

    def describe(self) -> str:
        """How the images are turned into the model's input, in one line (the CLI says it on stderr)."""
        scaling = "scaled to [0, 1]" + (
            f", minus mean {_values_text(self.mean)}, divided by std {_values_text(self.std)}" if self.normalised
            else " without mean/std normalisation")
        chosen = " (the model's height and width are dynamic: --image-size H,W to choose)" if self.size_chosen else ""
        return f"{len(self.files)} images from {self.folder}, resized to {self.size[0]}x{self.size[1]}{chosen}, {scaling}, {self.layout}"

    @property
    def normalised(self) -> bool:
        """Whether a mean or std other than 0 and 1 is applied."""
        return bool(np.any(self.mean != 0) or np.any(self.std != 1))

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{input name: float32 images}`` batches."""
        for start in range(0, len(self.files), self.batch_size):
            images = np.stack([self._load(path) for path in self.files[start : start + self.batch_size]])
            if self.layout == "NCHW":
                images = images.transpose(0, 3, 1, 2)
            yield {self.input_names[0]: np.ascontiguousarray(images)}

    def _load(self, path: Path) -> np.ndarray:
        """One image as float32 HWC, resized, scaled to [0, 1] and normalised."""
        image = _read_array(path) if path.suffix.lower() in ARRAY_SUFFIXES else _read_image(path, self.channels)
        image = _resize(_with_channels(image, self.channels, path), self.size)
        return ((image - self.mean) / self.std).astype(np.float32)


def image_files(folder: Path) -> list[Path]:
    """The image and ``.npy`` files directly in ``folder``, sorted by name; raises if there are none or one
    is not a regular file (``io.check_data_path``: a FIFO would block, a device never end)."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    files = sorted(io.check_data_path(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | ARRAY_SUFFIXES)
    if not files:
        raise UsageError(f"{folder}: no images (.png, .jpg, .jpeg, .bmp, .npy) found")
    return files


def _layout(layout: str) -> str:
    """``layout`` in upper case, if it is one of ``LAYOUTS``."""
    if layout.upper() not in LAYOUTS:
        raise UsageError(f"image layout must be one of {LAYOUTS}, got {layout!r}")
    return layout.upper()


def _values_text(values: np.ndarray) -> str:
    return ",".join(f"{v:g}" for v in values)


def _read_image(path: Path, channels: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("reading PNG/JPEG calibration images needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as image:
            converted = image.convert("L" if channels == 1 else "RGB")
    except (OSError, Image.DecompressionBombError):  # Pillow refuses images of more than 2 x MAX_IMAGE_PIXELS
        raise UsageError(f"{path}: not a readable image") from None
    return np.asarray(converted, dtype=np.float32) / 255.0


def _read_array(path: Path) -> np.ndarray:
    """An ``.npy`` image, HW or HWC; integer arrays are taken as 0..255 pixels (read by ``io.load_npy``: checked first)."""
    array = io.load_npy(path)
    if array.dtype.kind in "iub":
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32)


def _with_channels(image: np.ndarray, channels: int, path: Path) -> np.ndarray:
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, channels):
        raise UsageError(f"{path}: image of shape {image.shape} cannot give {channels} channel(s)")
    return np.repeat(image, channels, axis=2) if image.shape[2] != channels else image


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an HWC float image to ``size`` = (height, width), in NumPy so ``.npy`` needs no Pillow."""
    if image.shape[:2] == size:
        return image
    top, bottom, row_weight = _sample_positions(image.shape[0], size[0])
    left, right, col_weight = _sample_positions(image.shape[1], size[1])
    rows = _blend(image[top], image[bottom], row_weight[:, None, None])
    return _blend(rows[:, left], rows[:, right], col_weight[None, :, None])


def _blend(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return first * (1 - weight) + second * weight


def _sample_positions(old: int, new: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices and weights of half-pixel-centred bilinear sampling along one axis."""
    centres = np.clip((np.arange(new) + 0.5) * old / new - 0.5, 0, old - 1)
    below = np.floor(centres).astype(np.int64)
    return below, np.minimum(below + 1, old - 1), (centres - below).astype(np.float32)


def _per_channel(values: Sequence[float] | None, default: float, channels: int, what: str) -> np.ndarray:
    array = np.full(channels, default, dtype=np.float32) if values is None else np.asarray(values, dtype=np.float32)
    if array.size == 1:
        array = np.repeat(array, channels)
    if array.shape != (channels,):
        raise UsageError(f"image {what} needs 1 or {channels} values, got {array.size}")
    return array
