"""Range estimators against exact or brute-force references, streamed or at once, in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from onnxcompress.calibration import MSE, Entropy, MinMax, Percentile, make_estimator
from onnxcompress.errors import UsageError

BINS, LEVELS = 64, 16


def _fed(estimator, values: np.ndarray, batches: int = 1):
    for part in np.array_split(values, batches):
        estimator.update(part)
    return estimator


def test_minmax_is_exact(distribution):
    assert _fed(MinMax(), distribution, 13).range() == (distribution.min(), distribution.max())


def test_minmax_ignores_nonfinite_values():
    assert _fed(MinMax(), np.array([np.nan, -1.5, np.inf, 2.0, -np.inf])).range() == (-1.5, 2.0)


@pytest.mark.parametrize("percentile", [99.0, 99.9, 99.99])
def test_percentile_is_within_a_bin_of_numpy(distribution, percentile):
    estimator = _fed(Percentile(percentile), distribution, 5)
    low, high = estimator.range()
    width = estimator.histogram.width
    assert abs(low - np.percentile(distribution, 100 - percentile)) <= width
    assert abs(high - np.percentile(distribution, percentile)) <= width


def _brute_best(brute, histogram, score) -> tuple[float, float]:
    windows = brute.windows(histogram, LEVELS)
    scores = [score(window) for window in windows]
    _, _, low, high = windows[int(np.argmin(scores))]
    return low, high


def test_entropy_picks_the_brute_force_kl_minimum(distribution, brute):
    estimator = _fed(Entropy(bins=BINS, levels=LEVELS), distribution)
    counts = estimator.histogram.used_counts()
    expected = _brute_best(brute, estimator.histogram, lambda w: brute.kl(counts, w[0], w[1], LEVELS))
    assert estimator.range() == pytest.approx(expected, rel=1e-12)


def test_mse_picks_the_brute_force_error_minimum(distribution, brute):
    estimator = _fed(MSE(bins=BINS, levels=LEVELS), distribution)
    counts = estimator.histogram.used_counts()
    centers = brute.centers(estimator.histogram)
    expected = _brute_best(brute, estimator.histogram, lambda w: brute.mse(counts, centers, w[2], w[3], LEVELS))
    assert estimator.range() == pytest.approx(expected, rel=1e-12)


def test_entropy_keeps_zero_as_the_low_end_of_relu_outputs():
    relu = np.maximum(np.random.default_rng(3).standard_normal(5000), 0)
    low, high = _fed(Entropy(), relu).range()
    assert low == 0.0 and 0 < high <= relu.max()


def test_entropy_clips_heavy_tails_more_than_minmax():
    heavy = np.random.default_rng(4).standard_t(2, 20_000)
    low, high = _fed(Entropy(), heavy).range()
    assert heavy.min() < low < 0 < high < heavy.max()


def test_bins_are_honoured_as_the_minimum_resolution(distribution):
    for bins in (32, 512):
        assert _fed(Entropy(bins=bins), distribution).histogram.used_bins >= bins


ESTIMATOR_FACTORIES = {
    "minmax": MinMax,
    "percentile": lambda: Percentile(99.9, bins=BINS),
    "entropy": lambda: Entropy(bins=BINS, levels=LEVELS),
    "mse": lambda: MSE(bins=BINS, levels=LEVELS),
}


@pytest.mark.parametrize("method", sorted(ESTIMATOR_FACTORIES))
def test_many_small_batches_give_the_same_range_as_all_at_once(distribution, method):
    factory = ESTIMATOR_FACTORIES[method]
    shuffled = np.random.default_rng(5).permutation(distribution)
    assert _fed(factory(), shuffled, 250).range() == _fed(factory(), distribution).range()


def _peak_bytes(method: str, batches: int) -> int:
    rng = np.random.default_rng(0)
    tracemalloc.start()
    estimator = make_estimator(method)
    for _ in range(batches):
        estimator.update(rng.standard_normal(4096).astype(np.float32))
    estimator.range()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_memory_stays_flat_with_ten_times_more_samples(method):
    assert _peak_bytes(method, 200) < 1.5 * _peak_bytes(method, 20)


def test_an_estimator_without_finite_values_says_so():
    for estimator in (MinMax(), Entropy()):
        estimator.update(np.array([np.nan]))
        with pytest.raises(UsageError, match="^no finite values were seen$"):
            estimator.range()


def test_constant_data_gives_a_point_range():
    assert _fed(MSE(), np.full(100, 2.5)).range() == (2.5, 2.5)


def test_unknown_methods_and_options_are_usage_errors():
    with pytest.raises(UsageError, match=r"^unknown calibration method 'kl'; choose one of \['entropy', 'minmax', 'mse', 'percentile'\]$"):
        make_estimator("kl")
    with pytest.raises(UsageError, match=r"^calibration method 'minmax' does not take options \['bins'\]$"):
        make_estimator("minmax", bins=10)
    with pytest.raises(UsageError, match=r"^percentile must be in \(50, 100\], got 120$"):
        make_estimator("percentile", percentile=120)
