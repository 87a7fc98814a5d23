"""A streaming histogram with power-of-two bin widths: bounded memory, and batch order does not matter.

Bin ``k`` covers ``[k * w, (k + 1) * w)`` with ``w = 2**e``. The exponent ``e`` is the smallest one for
which every value seen fits in ``capacity`` bins (and keys stay exact integers). When new values fall
outside, ``e`` grows and old bins merge pairwise (``k -> k // 2**shift``), which is exactly the binning
the final ``e`` would have given from the start. So feeding the data in any number of batches gives
the same counts as feeding it at once — ORT's HistogramCollector re-bins by interpolation instead,
so its histogram (and thus its ranges) depends on batch order and size. Memory is ``capacity``
counters, independent of the number of samples. Non-finite values are counted and left out.
"""

from __future__ import annotations

import math

import numpy as np

MANTISSA_BITS = 52


class StreamingHistogram:
    """Counts of values in ``capacity`` aligned bins of width ``2**exponent``, plus the exact min/max."""

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 2:
            raise ValueError("a histogram needs at least 2 bins")
        self.capacity = capacity
        self.counts = np.zeros(capacity, dtype=np.int64)
        self.first_key = 0
        self.exponent: int | None = None
        self.minimum = math.inf
        self.maximum = -math.inf
        self.nonfinite = 0

    @property
    def width(self) -> float:
        """Width of one bin."""
        return math.ldexp(1.0, self.exponent) if self.exponent is not None else 0.0

    @property
    def total(self) -> int:
        """Number of finite values counted."""
        return int(self.counts.sum())

    @property
    def used_bins(self) -> int:
        """Bins from the one holding the minimum to the one holding the maximum."""
        return self._key(self.maximum) - self.first_key + 1 if self.exponent is not None else 0

    def edges(self) -> np.ndarray:
        """The ``used_bins + 1`` bin edges from the minimum's bin to the maximum's."""
        return (self.first_key + np.arange(self.used_bins + 1)) * self.width

    def used_counts(self) -> np.ndarray:
        """Counts of the ``used_bins`` bins between the minimum and the maximum."""
        return self.counts[: self.used_bins]

    def update(self, array: np.ndarray) -> None:
        """Add the finite values of ``array``.

        float32 stays float32 while bins are at most 1 wide: scaling up by a power of two is then exact.
        """
        values = np.asarray(array).ravel()
        if values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            self.nonfinite += int(values.size - finite.sum())
            values = values[finite]
        if values.size == 0:
            return
        self._extend(float(values.min()), float(values.max()))
        if self.exponent > 0:
            values = values.astype(np.float64, copy=False)
        scaled = np.floor(np.ldexp(values, -self.exponent))
        keys = scaled.astype(np.int64)
        keys -= self.first_key
        self.counts += np.bincount(keys, minlength=self.capacity)

    def _extend(self, low: float, high: float) -> None:
        """Widen the bins (merging old ones) and shift the window so ``[low, high]`` fits too."""
        self.minimum, self.maximum = min(self.minimum, low), max(self.maximum, high)
        exponent = self._fitting_exponent()
        if self.exponent is None:
            self.exponent = exponent
        elif exponent > self.exponent:
            self._merge(exponent - self.exponent)
        first = self._key(self.minimum)
        if first != self.first_key:
            self.counts = _shift(self.counts, self.first_key - first)
            self.first_key = first

    def _fitting_exponent(self) -> int:
        """Smallest exponent (never below the current one) that holds min..max in ``capacity`` bins."""
        magnitude = max(abs(self.minimum), abs(self.maximum))
        lowest = (math.frexp(magnitude)[1] - MANTISSA_BITS) if magnitude > 0 else -1074
        span = self.maximum - self.minimum
        guess = math.frexp(span / (self.capacity - 1))[1] - 2 if span > 0 else lowest
        exponent = max(lowest, guess, self.exponent if self.exponent is not None else lowest)
        while self._span(exponent) > self.capacity:
            exponent += 1
        return exponent

    def _span(self, exponent: int) -> int:
        return math.floor(math.ldexp(self.maximum, -exponent)) - math.floor(math.ldexp(self.minimum, -exponent)) + 1

    def _merge(self, shift: int) -> None:
        old_keys = self.first_key + np.arange(self.capacity, dtype=np.int64)
        new_keys = old_keys >> min(shift, 63)  # keys are below 2**63 in magnitude: 63 already gives floor
        self.exponent += shift
        self.first_key = int(new_keys[0])
        self.counts = np.bincount(new_keys - self.first_key, weights=self.counts, minlength=self.capacity)[
            : self.capacity
        ].astype(np.int64)

    def _key(self, value: float) -> int:
        return math.floor(math.ldexp(value, -self.exponent))


def _shift(counts: np.ndarray, offset: int) -> np.ndarray:
    """``counts`` moved ``offset`` bins to the right (positive) or left, zero-filled."""
    shifted = np.zeros_like(counts)
    if abs(offset) >= counts.size:
        return shifted
    if offset >= 0:
        shifted[offset:] = counts[: counts.size - offset]
    else:
        shifted[:offset] = counts[-offset:]
    return shifted
