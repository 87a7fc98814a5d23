"""Which recipe only adds loss to another: monotone options pushed further, non-recovering passes appended."""

from __future__ import annotations

import pytest

from onnxcompress import compare, lossier


def _adds(cheaper: str, other: str) -> bool:
    return lossier.only_adds_loss(lossier.steps(compare.parse_recipe(cheaper)), lossier.steps(compare.parse_recipe(other)))


@pytest.mark.parametrize(("cheaper", "other"), [
    ("prune-channels:ratio=0.3", "prune-channels:ratio=0.5"),  # a monotone option pushed further
    ("prune-channels:ratio=0.3", "prune-channels:ratio=0.3;quantize-static"),  # a lossy pass appended
    ("prune-channels:ratio=0.3", "prune-channels:ratio=0.5;quantize-static"),  # both
    ("fuse", "fuse;cleanup"),  # an exact pass keeps what it is given, so a miss stays a miss
])
def test_only_adds_loss(cheaper, other):
    assert _adds(cheaper, other)
    assert not _adds(other, cheaper)


@pytest.mark.parametrize(("cheaper", "other"), [
    ("prune-channels:ratio=0.5", "prune-channels:ratio=0.3"),  # less removed
    ("prune-channels:ratio=0.3", "prune-channels:ratio=0.5,scope=global"),  # another option changed too
    ("prune-channels:ratio=0.3", "prune-channels:ratio=0.3;recover"),  # trained back afterwards
    ("prune-channels:ratio=0.3", "fuse;prune-channels:ratio=0.5"),  # another pass first
    ("prune-channels:ratio=0.5", "prune-channels"),  # the same recipe (0.5 is the default): neither is cheaper
    ("quantize-static", "quantize-dynamic"),
])
def test_does_not_only_add_loss(cheaper, other):
    assert not _adds(cheaper, other)
