"""Silencing dependencies that log warnings through ``logging`` while we call them.

Our passes report what they did in their notes; a dependency's per-tensor warnings (onnx-ir's one line
per IR-3 initializer input, ORT's quantizers' "Expected bias ... to be an initializer" on the root
logger) would only bury them on the terminal.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(logger_name: str = "") -> Iterator[None]:
    """Raise ``logger_name``'s level (the root logger by default) to ERROR while the block runs."""
    logger = logging.getLogger(logger_name or None)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
