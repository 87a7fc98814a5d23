"""Progress of long work (pipeline steps, calibration, training epochs) as log records.

Everything long logs one line per step to the ``onnxcompress`` logger at INFO: from Python, configure
``logging`` to see it; the CLI shows it on stderr (dim on a terminal, plain lines when piped, as in CI),
``-q`` hides it and ``-v`` adds detail.
"""

from __future__ import annotations

import logging
import time

LOGGER = logging.getLogger("onnxcompress")


def log(message: str) -> None:
    """One progress line."""
    LOGGER.info(message)


def detail(message: str) -> None:
    """A line only ``-v`` (DEBUG) shows."""
    LOGGER.debug(message)


class Eta:
    """Elapsed and remaining time of ``total`` equal steps, for lines such as ``epoch 3/20 (ETA 1m05s)``."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.start = time.perf_counter()

    def remaining(self, done: int) -> str:
        """The time the other ``total - done`` steps should take at the pace so far, as ``1m05s``."""
        if done <= 0:
            return "?"
        seconds = (time.perf_counter() - self.start) / done * (self.total - done)
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"
