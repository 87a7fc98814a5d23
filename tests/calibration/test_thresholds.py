"""The vectorised KL and MSE threshold scores against plain per-bin loops over the same histogram."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress.calibration import thresholds
from onnxcompress.calibration.histogram import StreamingHistogram

LEVELS = 16


def _histogram(values: np.ndarray) -> StreamingHistogram:
    histogram = StreamingHistogram(128)
    histogram.update(values)
    return histogram


def test_candidate_windows_are_the_clipped_symmetric_windows(distribution, brute):
    histogram = _histogram(distribution)
    windows = thresholds.candidate_windows(histogram, LEVELS)
    expected = np.array(brute.windows(histogram, LEVELS))
    got = np.column_stack([windows.start, windows.stop, windows.low, windows.high])
    np.testing.assert_array_equal(got, expected)


def test_kl_scores_equal_the_bin_by_bin_definition(distribution, brute):
    histogram = _histogram(distribution)
    counts = histogram.used_counts()
    windows = thresholds.candidate_windows(histogram, LEVELS)
    expected = [brute.kl(counts, int(a), int(b), LEVELS) for a, b in zip(windows.start, windows.stop)]
    np.testing.assert_allclose(thresholds.kl_divergences(counts, windows, LEVELS), expected, rtol=1e-9, atol=1e-12)


def test_mse_scores_equal_the_bin_by_bin_definition(distribution, brute):
    histogram = _histogram(distribution)
    counts = histogram.used_counts().astype(np.float64)
    centers = brute.centers(histogram)
    windows = thresholds.candidate_windows(histogram, LEVELS)
    expected = [brute.mse(counts, centers, lo, hi, LEVELS) for lo, hi in zip(windows.low, windows.high)]
    np.testing.assert_allclose(
        thresholds.quantization_errors(counts, centers, windows, LEVELS), expected, rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("values", [[-3.0, 0.1, 0.2, 9.0], [5.0, 5.5, 6.0, 40.0]], ids=["outliers", "far_from_zero"])
def test_kl_stays_finite_when_windows_hold_only_outliers(values, brute):
    histogram = _histogram(np.array(values))
    counts = histogram.used_counts()
    windows = thresholds.candidate_windows(histogram, 4)
    scores = thresholds.kl_divergences(counts, windows, 4)
    expected = [brute.kl(counts, int(a), int(b), 4) for a, b in zip(windows.start, windows.stop)]
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-12)


def test_small_blocks_give_the_same_scores(monkeypatch, distribution):
    histogram = _histogram(distribution)
    counts = histogram.used_counts()
    windows = thresholds.candidate_windows(histogram, LEVELS)
    whole = thresholds.kl_divergences(counts, windows, LEVELS)
    monkeypatch.setattr(thresholds, "BLOCK_ELEMENTS", LEVELS * 3)
    np.testing.assert_array_equal(thresholds.kl_divergences(counts, windows, LEVELS), whole)
