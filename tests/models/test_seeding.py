"""seeded() makes construction reproducible without disturbing the caller's random stream."""

from __future__ import annotations

import torch

from onnxcompress.models.seeding import seeded


def test_same_seed_same_numbers():
    with seeded(7):
        a = torch.rand(5)
    with seeded(7):
        b = torch.rand(5)
    assert torch.equal(a, b)


def test_caller_stream_is_restored():
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    with seeded(99):
        torch.rand(10)
    assert torch.equal(torch.rand(3), expected)
