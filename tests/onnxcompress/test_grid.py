"""Grid recipes: brace lists expand to the cartesian product, empty alternatives drop text, bad braces are one line."""

from __future__ import annotations

import pytest

from onnxcompress import grid
from onnxcompress.errors import UsageError


def test_braces_expand_to_every_combination_first_brace_slowest():
    assert grid.expand("prune-channels:ratio={0.1,0.3};{quantize-static,quantize-dynamic}") == [
        "prune-channels:ratio=0.1;quantize-static", "prune-channels:ratio=0.1;quantize-dynamic",
        "prune-channels:ratio=0.3;quantize-static", "prune-channels:ratio=0.3;quantize-dynamic",
    ]


def test_an_empty_alternative_makes_a_pass_optional_and_an_empty_recipe_is_dropped():
    assert grid.expand("fuse ; {quantize-static,}") == ["fuse;quantize-static", "fuse"]
    assert grid.expand("{fuse,};{cleanup,}") == ["fuse;cleanup", "fuse", "cleanup"]  # neither: the input itself


def test_a_recipe_without_braces_is_itself_and_repeats_are_dropped():
    assert grid.expand("fuse;cleanup") == ["fuse;cleanup"]
    assert grid.expand_all(["fuse", "{fuse,cleanup}", "cleanup"]) == ["fuse", "cleanup"]


@pytest.mark.parametrize("bad", ["prune-channels:ratio={0.1,0.3", "ratio=0.1}", "{a,{b,c}}"])
def test_unbalanced_or_nested_braces_are_refused(bad):
    with pytest.raises(UsageError, match="unbalanced or nested"):
        grid.expand(bad)


def test_a_grid_too_large_is_refused_before_it_is_expanded(monkeypatch):
    monkeypatch.setattr(grid, "MAX_CANDIDATES", 8)
    assert len(grid.expand("{a,b}{c,d}{e,f}")) == 8
    with pytest.raises(UsageError, match="expands to 16 recipes, more than 8"):
        grid.expand("{a,b}{c,d}{e,f}{g,h}")
    with pytest.raises(UsageError, match="expand to 12 candidates, more than 8"):
        grid.expand_all(["{a,b}{c,d}{e,f}", "{x,y}{z,w}"])
