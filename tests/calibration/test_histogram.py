"""StreamingHistogram: exact power-of-two binning, order/batching independence, bounded memory."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from onnxcompress.calibration.histogram import StreamingHistogram


def _filled(values: np.ndarray, batches: int, capacity: int = 256) -> StreamingHistogram:
    histogram = StreamingHistogram(capacity)
    for part in np.array_split(values, batches):
        histogram.update(part)
    return histogram


def test_counts_match_floor_of_values_over_width(distribution):
    histogram = _filled(distribution, 1)
    keys = np.floor(distribution / histogram.width).astype(np.int64)
    expected = np.bincount(keys - keys.min())
    assert histogram.first_key == keys.min()
    np.testing.assert_array_equal(histogram.used_counts(), expected)
    assert histogram.total == distribution.size


def test_data_spans_between_half_and_all_of_the_capacity(distribution):
    histogram = _filled(distribution, 1, capacity=256)
    assert 128 <= histogram.used_bins <= 256
    assert math.log2(histogram.width).is_integer()


@pytest.mark.parametrize("batches", [7, 200])
def test_many_small_batches_in_any_order_give_the_same_histogram(distribution, batches):
    at_once = _filled(distribution, 1)
    shuffled = np.random.default_rng(1).permutation(distribution)
    streamed = _filled(shuffled, batches)
    assert (streamed.exponent, streamed.first_key) == (at_once.exponent, at_once.first_key)
    np.testing.assert_array_equal(streamed.counts, at_once.counts)
    assert (streamed.minimum, streamed.maximum) == (at_once.minimum, at_once.maximum)


def test_growing_range_merges_bins_without_losing_counts():
    histogram = StreamingHistogram(64)
    histogram.update(np.linspace(0.0, 0.001, 100))
    histogram.update(np.array([-5000.0, 7000.0]))
    assert histogram.total == 102
    assert histogram.edges()[0] <= -5000.0 and histogram.edges()[-1] > 7000.0


@pytest.mark.parametrize("first", [[-1.116, -0.125], [0.0, 0.0]], ids=["narrow_negative", "all_zero"])
def test_a_degenerate_first_batch_then_wide_data_gives_the_at_once_histogram(first):
    rest = np.random.default_rng(2).uniform(-8.0, 60.0, 500)
    streamed = StreamingHistogram(4096)
    streamed.update(np.array(first))
    streamed.update(rest)
    at_once = _filled(np.concatenate([first, rest]), 1, capacity=4096)
    assert (streamed.exponent, streamed.first_key) == (at_once.exponent, at_once.first_key)
    np.testing.assert_array_equal(streamed.counts, at_once.counts)


def test_nonfinite_values_are_counted_apart():
    histogram = StreamingHistogram(16)
    histogram.update(np.array([1.0, np.inf, -np.inf, np.nan, 2.0]))
    assert (histogram.total, histogram.nonfinite) == (2, 3)
    assert (histogram.minimum, histogram.maximum) == (1.0, 2.0)


def test_constant_and_tiny_values_stay_exact():
    histogram = StreamingHistogram(16)
    histogram.update(np.full(10, 3.0))
    histogram.update(np.array([1e-300]))
    assert histogram.total == 11
    assert histogram.edges()[0] <= 1e-300 and histogram.edges()[-1] > 3.0


def _peak_bytes(batches: int) -> int:
    rng = np.random.default_rng(0)
    tracemalloc.start()
    histogram = StreamingHistogram(4096)
    for _ in range(batches):
        histogram.update(rng.standard_normal(10_000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_does_not_grow_with_the_number_of_samples():
    assert _peak_bytes(100) < 1.5 * _peak_bytes(10)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e6], ids=["narrow_bins", "unit", "wide_bins"])
def test_float32_input_bins_exactly_like_float64(distribution, scale):
    values = (distribution * scale).astype(np.float32)
    as_float32 = _filled(values, 9)
    as_float64 = _filled(values.astype(np.float64), 9)
    assert as_float32.exponent == as_float64.exponent
    np.testing.assert_array_equal(as_float32.counts, as_float64.counts)
