"""Activation ranges for static quantization: from a ranges file, or calibrated once and saved there.

Calibration is timed and its peak resident memory sampled (the issue's report asks for both: ORT's
own calibration has needed hundreds of GB on real models). ORT's native buffers do not show up in
``tracemalloc``, so we sample the process's RSS from a thread instead.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx_ir as ir

from onnxcompress import calibration
from onnxcompress.errors import UsageError

Method = Literal["minmax", "percentile", "entropy", "mse"]  # calibration.ESTIMATORS, as an option type
SAMPLE_SECONDS = 0.02
U8_LEVELS = 255
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass
class CalibrationRun:
    """The ranges used, where they came from, and what calibrating cost."""

    ranges: dict[str, tuple[float, float]]
    source: str
    seconds: float
    peak_rss_mb: float

    def to_dict(self) -> dict:
        """JSON-ready summary (without the ranges themselves)."""
        return {"source": self.source, "tensors": len(self.ranges), "seconds": self.seconds, "peak_rss_mb": self.peak_rss_mb}


def activation_ranges(model: ir.Model, reader, tensor_names: Sequence[str], *, method: str, ranges_file: str | None) -> CalibrationRun:
    """Ranges of ``tensor_names``: loaded from ``ranges_file`` if it exists, else estimated (and saved there)."""
    if method not in calibration.ESTIMATORS:
        raise UsageError(f"method must be one of {', '.join(calibration.ESTIMATORS)}, got {method!r}")
    if ranges_file and Path(ranges_file).is_file():
        return CalibrationRun(dict(calibration.load_ranges(ranges_file, model)), f"loaded {ranges_file}", 0.0, 0.0)
    if reader is None:
        raise UsageError("calibrated activation ranges need calibration data (--calibration) or an existing ranges_file")
    with PeakRss() as peak:
        start = time.perf_counter()
        ranges = calibration.estimate_ranges(model, reader, list(tensor_names), method=method)
        seconds = time.perf_counter() - start
    if ranges_file:
        calibration.save_ranges(ranges, ranges_file, inputs=[model])  # never over the model's own files
    return CalibrationRun(dict(ranges), f"{method} estimator", seconds, peak.mb)


def unbounded_ranges(ranges: dict[str, tuple[float, float]]) -> list[str]:
    """The tensors whose range reaches an infinity or NaN (a mask of -inf added to attention scores): quantized,
    their scale is infinite or 1 and the mask is lost."""
    return sorted(name for name, (lo, hi) in ranges.items() if not (np.isfinite(lo) and np.isfinite(hi)))


def u8_scale_and_zero_point(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric U8 scale and zero point of ranges ``[lo, hi]`` (arrays or scalars) widened to hold 0,
    as ORT's ``DynamicQuantizeLinear`` derives them; scale 1 for an empty range."""
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    scale = np.where(hi > lo, (hi - lo) / U8_LEVELS, 1.0)
    return scale, np.clip(np.round(-lo / scale), 0, U8_LEVELS)


class PeakRss:
    """Context manager sampling this process's resident memory; ``mb`` is the peak above the start."""

    def __init__(self) -> None:
        self.mb = 0.0
        self._stop = threading.Event()
        self._start = _rss_bytes()
        self._peak = self._start
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.mb = (self._peak - self._start) / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._peak = max(self._peak, _rss_bytes())


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except OSError:
        return 0

