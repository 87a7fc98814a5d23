"""Range estimators for quantization: min-max, percentile, entropy (KL) and MSE, all streaming.

Each estimator takes batches through ``update(array)`` and answers ``range() -> (lo, hi)``. Memory is
fixed when built (two floats for ``MinMax``, ``2 * bins`` counters for the histogram-based ones) and
does not grow with the number of samples. Non-finite values (e.g. ``-inf`` attention masks) are left
out. ``bins`` is honoured: the data always spans at least ``bins`` histogram bins (ORT ignores its
``CalibNumBins``, so its entropy ranges come out identical to min-max).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxcompress.calibration import thresholds
from onnxcompress.calibration.histogram import StreamingHistogram
from onnxcompress.errors import UsageError

Range = tuple[float, float]


class MinMax:
    """The exact smallest and largest finite values seen."""

    def __init__(self) -> None:
        self.minimum = math.inf
        self.maximum = -math.inf

    def update(self, array: np.ndarray) -> None:
        """Fold the finite values of ``array`` into the running min and max."""
        values = np.asarray(array)
        finite = values[np.isfinite(values)] if values.dtype.kind in "fc" else values
        if finite.size:
            self.minimum = min(self.minimum, float(finite.min()))
            self.maximum = max(self.maximum, float(finite.max()))

    def range(self) -> Range:
        """``(min, max)`` of everything seen."""
        if self.minimum > self.maximum:
            raise UsageError("no finite values were seen")
        return self.minimum, self.maximum


class _HistogramEstimator:
    """Shared part of the estimators built on a ``StreamingHistogram`` with at least ``bins`` bins."""

    def __init__(self, bins: int = 2048) -> None:
        if bins < 2:
            raise UsageError(f"bins must be at least 2, got {bins}")
        self.bins = bins
        self.histogram = StreamingHistogram(capacity=2 * bins)

    def update(self, array: np.ndarray) -> None:
        """Add the finite values of ``array`` to the histogram."""
        self.histogram.update(array)

    def range(self) -> Range:
        """The estimated ``(lo, hi)``."""
        if self.histogram.total == 0:
            raise UsageError("no finite values were seen")
        if self.histogram.minimum == self.histogram.maximum:
            return self.histogram.minimum, self.histogram.maximum
        return self._select()

    def _select(self) -> Range:
        raise NotImplementedError


class Percentile(_HistogramEstimator):
    """Cuts ``100 - percentile`` percent off each tail (linear interpolation inside the bin)."""

    def __init__(self, percentile: float = 99.99, bins: int = 2048) -> None:
        if not 50 < percentile <= 100:
            raise UsageError(f"percentile must be in (50, 100], got {percentile}")
        super().__init__(bins)
        self.percentile = percentile

    def _select(self) -> Range:
        fraction = self.percentile / 100
        return self.quantile(1 - fraction), self.quantile(fraction)

    def quantile(self, fraction: float) -> float:
        """The ``fraction`` quantile, interpolated between order statistics as ``np.percentile`` does.

        Each order statistic is placed inside its bin, so the result is within one bin width of NumPy's.
        """
        position = fraction * (self.histogram.total - 1)
        below = math.floor(position)
        upper = min(below + 1, self.histogram.total - 1)
        cumulative = np.cumsum(self.histogram.used_counts())
        low, high = self._order_statistic(below, cumulative), self._order_statistic(upper, cumulative)
        return low + (high - low) * (position - below)

    def _order_statistic(self, rank: int, cumulative: np.ndarray) -> float:
        """Estimate of the ``rank``-th smallest value: evenly spaced within its bin (edges clipped to the data)."""
        hist = self.histogram
        index = int(np.searchsorted(cumulative, rank, side="right"))
        before = int(cumulative[index - 1]) if index else 0
        count = int(cumulative[index]) - before
        low = max((hist.first_key + index) * hist.width, hist.minimum)
        high = min((hist.first_key + index + 1) * hist.width, hist.maximum)
        return float(low + (high - low) * (rank - before + 0.5) / count)


class Entropy(_HistogramEstimator):
    """The range minimising KL divergence between the data and its ``levels``-level quantization."""

    def __init__(self, bins: int = 2048, levels: int = 256) -> None:
        super().__init__(bins)
        self.levels = levels

    def _select(self) -> Range:
        windows = thresholds.candidate_windows(self.histogram, self.levels)
        scores = thresholds.kl_divergences(self.histogram.used_counts(), windows, self.levels)
        return thresholds.best_window(scores, windows)


class MSE(_HistogramEstimator):
    """The range minimising the mean squared error of ``levels``-level uniform quantization."""

    def __init__(self, bins: int = 2048, levels: int = 256) -> None:
        super().__init__(bins)
        self.levels = levels

    def _select(self) -> Range:
        hist = self.histogram
        windows = thresholds.candidate_windows(hist, self.levels)
        edges = hist.edges()
        centers = np.clip((edges[:-1] + edges[1:]) / 2, hist.minimum, hist.maximum)
        scores = thresholds.quantization_errors(hist.used_counts().astype(np.float64), centers, windows, self.levels)
        return thresholds.best_window(scores, windows)


ESTIMATORS: dict[str, type] = {"minmax": MinMax, "percentile": Percentile, "entropy": Entropy, "mse": MSE}


def make_estimator(method: str, **options: Any):
    """A fresh estimator by name (``minmax``, ``percentile``, ``entropy``, ``mse``) with its options."""
    if method not in ESTIMATORS:
        raise UsageError(f"unknown calibration method {method!r}; choose one of {sorted(ESTIMATORS)}")
    try:
        return ESTIMATORS[method](**options)
    except TypeError:
        raise UsageError(f"calibration method {method!r} does not take options {sorted(options)}") from None
