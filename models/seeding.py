"""Reproducible randomness for model construction and training, without leaking global state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block and restore the caller's generator state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
