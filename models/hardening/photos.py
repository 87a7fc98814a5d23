"""Natural photographs that ship on the machine, cut into varied crops for vision models.

The sources are scikit-learn's two sample photos (``china.jpg``, ``flower.jpg``) and matplotlib's
``grace_hopper.jpg``. Each sample is a random square crop (30-100 % of the shorter side) of one of
them, maybe mirrored, resized to the model's size: real image statistics (edges, textures, skin,
sky), reproducible from a seed.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@functools.lru_cache(maxsize=1)
def sources() -> tuple[Image.Image, ...]:
    """The photos, as RGB images."""
    from matplotlib import cbook
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(array) for array in load_sample_images().images]
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        photos.append(Image.open(handle).convert("RGB"))
    return tuple(photos)


def crops(count: int, size: int, seed: int) -> np.ndarray:
    """``count`` RGB crops, ``[count, size, size, 3]`` floats in [0, 1]."""
    rng = np.random.default_rng(seed)
    photos = sources()
    out = np.empty((count, size, size, 3), np.float32)
    for index in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(min(photo.size) * rng.uniform(0.3, 1.0))
        left, top = rng.integers(photo.size[0] - side + 1), rng.integers(photo.size[1] - side + 1)
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out[index] = np.asarray(crop, np.float32) / 255.0
    return out


def imagenet_batch(count: int, size: int, seed: int) -> np.ndarray:
    """Crops normalised with ImageNet's mean and deviation, channels first: ``[count, 3, size, size]``."""
    return np.ascontiguousarray(((crops(count, size, seed) - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2))
