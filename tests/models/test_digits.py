"""The digits split: shapes, range, determinism, stratification, faithful bilinear upscaling."""

from __future__ import annotations

import numpy as np
import torch

from onnxcompress.models import digits


def test_shapes_dtypes_and_range():
    split = digits.load_split(size=32)
    assert split.x_train.shape[1:] == split.x_test.shape[1:] == (1, 32, 32)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert len(split.x_train) + len(split.x_test) == 1797
    assert 0.18 < len(split.x_test) / 1797 < 0.22
    assert split.x_train.min() >= 0.0 and split.x_train.max() <= 1.0 and split.x_train.max() > 0.9


def test_split_is_deterministic_and_seed_dependent():
    a, b, c = digits.load_split(seed=0), digits.load_split(seed=0), digits.load_split(seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a.y_test, c.y_test)


def test_split_is_stratified():
    split = digits.load_split()
    train = np.bincount(split.y_train) / len(split.y_train)
    test = np.bincount(split.y_test) / len(split.y_test)
    assert np.abs(train - test).max() < 0.01


def test_train_and_test_do_not_overlap():
    split = digits.load_split(size=8)
    train = {x.tobytes() for x in split.x_train}
    assert not any(x.tobytes() in train for x in split.x_test)


def test_upscale_matches_torch_bilinear():
    images = np.random.default_rng(0).random((3, 8, 8))
    ours = digits.upscale(images, 20)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(images)[:, None], size=20, mode="bilinear", align_corners=False
    )[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_bilinear_rows_sum_to_one():
    np.testing.assert_allclose(digits.bilinear_matrix(8, 32).sum(axis=1), 1.0)
