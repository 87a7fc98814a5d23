"""scikit-learn's bundled 8×8 handwritten digits, upscaled, as a fixed train/test split.

The demo's data set: 1,797 real images (no download: the data ship inside scikit-learn), upscaled
from 8×8 to ``size``×``size`` by bilinear interpolation (half-pixel centres, like
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``) and scaled to [0, 1].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SOURCE_SIZE = 8
SOURCE_MAX = 16.0
TEST_FRACTION = 0.2


class DigitsSplit(NamedTuple):
    """Images float32 ``[n, 1, size, size]`` in [0, 1]; labels int64 ``[n]``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_split(size: int = 32, seed: int = 0) -> DigitsSplit:
    """A stratified ~80/20 split of the digits, fixed by ``seed``, images upscaled to ``size``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if size < SOURCE_SIZE:
        raise ValueError(f"size must be at least {SOURCE_SIZE}, got {size}")
    data = load_digits()
    images = upscale(data.images / SOURCE_MAX, size)[:, None].astype(np.float32)
    labels = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=seed
    )
    return DigitsSplit(x_train, y_train, x_test, y_test)


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``[n, h, w]`` square images to ``[n, size, size]``."""
    rows = bilinear_matrix(images.shape[1], size)
    cols = bilinear_matrix(images.shape[2], size)
    return np.einsum("ij,njk,lk->nil", rows, images, cols)


def bilinear_matrix(source: int, target: int) -> np.ndarray:
    """``[target, source]`` weights of 1-D linear interpolation with half-pixel centres, edges clamped."""
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = position - low
    weights = np.zeros((target, source))
    np.add.at(weights, (np.arange(target), low), 1 - frac)
    np.add.at(weights, (np.arange(target), high), frac)
    return weights
