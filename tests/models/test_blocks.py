"""The building blocks keep shapes right and switch shortcuts/residuals where they should."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from onnxcompress.models import blocks


def test_basic_block_projects_shortcut_only_when_shape_changes():
    same = blocks.BasicBlock(8, 8)
    down = blocks.BasicBlock(8, 16, stride=2)
    assert isinstance(same.shortcut, nn.Identity)
    assert isinstance(down.shortcut, blocks.ConvBN)
    assert down(torch.rand(1, 8, 10, 10)).shape == (1, 16, 5, 5)


def test_inverted_residual_adds_input_only_when_shapes_match():
    assert blocks.InvertedResidual(8, 16, 8).residual
    assert not blocks.InvertedResidual(8, 16, 8, stride=2).residual
    assert not blocks.InvertedResidual(8, 16, 12).residual


def test_squeeze_excite_scales_channels_in_zero_one():
    se = blocks.SqueezeExcite(16).eval()
    x = torch.rand(2, 16, 4, 4) + 1
    ratio = se(x) / x
    assert ratio.min() >= 0 and ratio.max() <= 1
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio))


def test_concat_branches_stack_channels():
    assert blocks.ConcatBranches(6, 5)(torch.rand(1, 6, 4, 4)).shape == (1, 10, 4, 4)


def test_head_spellings_agree():
    mean = blocks.ClassifierHead(4, 3, "mean")
    pooled = blocks.ClassifierHead(4, 3, "global")
    mean.load_state_dict(pooled.state_dict())
    x = torch.rand(2, 4, 5, 5)
    assert torch.allclose(mean(x), pooled(x), atol=1e-6)


def test_head_refuses_unknown_pool():
    with pytest.raises(ValueError):
        blocks.ClassifierHead(4, 3, "max")
