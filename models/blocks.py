"""Building blocks of the reference CNNs, each chosen for the graph pattern it exports.

``ConvBN`` → Conv + BatchNormalization (+ Relu / HardSwish), the pair fusion folds;
``BasicBlock`` → two convs and a residual ``Add`` (channel pruning must shrink both sides);
``SqueezeExcite`` → a channel gate ending in ``Mul``; ``InvertedResidual`` → depthwise convs
(``group == channels``); ``ConcatBranches`` → a channel ``Concat``; ``ClassifierHead`` → pooling
spelled ``GlobalAveragePool + Flatten`` (``pool="global"``) or ``ReduceMean + Reshape``
(``pool="mean"``, the dynamo exporter's spelling), then ``Gemm``; ``TopDownMaskHead`` → lateral 1×1
convs, nearest ``Resize`` ×2 and ``Add`` across scales, then a one-channel map (a text detector's neck).
"""

from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("global", "mean")


class ConvBN(nn.Sequential):
    """Conv (no bias) + BatchNorm + optional activation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """ResNet BasicBlock: conv-bn-relu-conv-bn plus identity (or 1×1 projection) shortcut, then relu."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(ConvBN(cin, cout, 3, stride), ConvBN(cout, cout, 3, act=None))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else ConvBN(cin, cout, 1, stride, act=None)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(body(x) + shortcut(x))``."""
        return self.relu(self.body(x) + self.shortcut(x))


class SqueezeExcite(nn.Module):
    """Channel attention: pool, 1×1 reduce, relu, 1×1 expand, hard-sigmoid, multiply."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` scaled per channel by its gate."""
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1×1 expand, depthwise 3×3, optional squeeze-excite, 1×1 project (+ residual)."""

    def __init__(self, cin: int, hidden: int, cout: int, stride: int = 1, squeeze: bool = True):
        super().__init__()
        layers: list[nn.Module] = [
            ConvBN(cin, hidden, 1, act=nn.Hardswish),
            ConvBN(hidden, hidden, 3, stride, groups=hidden, act=nn.Hardswish),
        ]
        if squeeze:
            layers.append(SqueezeExcite(hidden))
        layers.append(ConvBN(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, plus ``x`` when shapes allow."""
        out = self.body(x)
        return out + x if self.residual else out


class ConcatBranches(nn.Module):
    """Two parallel branches (1×1 conv; depthwise 3×3 then 1×1) joined by a channel Concat."""

    def __init__(self, cin: int, each: int):
        super().__init__()
        self.pointwise = ConvBN(cin, each, 1, act=nn.Hardswish)
        self.spatial = nn.Sequential(ConvBN(cin, cin, 3, groups=cin, act=nn.Hardswish), ConvBN(cin, each, 1, act=nn.Hardswish))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Both branches' channels, concatenated."""
        return torch.cat([self.pointwise(x), self.spatial(x)], dim=1)


class ClassifierHead(nn.Module):
    """Global average pooling then a linear classifier; ``pool`` picks the exported spelling."""

    def __init__(self, channels: int, num_classes: int, pool: str = "global"):
        super().__init__()
        if pool not in POOLINGS:
            raise ValueError(f"pool must be one of {POOLINGS}, got {pool!r}")
        self.pool = pool
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[batch, num_classes]``."""
        if self.pool == "global":
            pooled = torch.flatten(self.avgpool(x), 1)
        else:
            pooled = x.mean(dim=(2, 3), keepdim=True).reshape(x.shape[0], -1)
        return self.fc(pooled)


class TopDownMaskHead(nn.Module):
    """A DB-style detector neck and head: each tapped feature map gets a 1×1 lateral conv, coarser maps are
    upsampled ×2 (nearest) and added on the way down, and a 3×3 conv + 1×1 conv give one logit per pixel
    at the finest tap's resolution."""

    def __init__(self, tap_channels: list[int], width: int = 64):
        super().__init__()
        self.laterals = nn.ModuleList(ConvBN(c, width, 1, act=None) for c in tap_channels)
        self.head = nn.Sequential(ConvBN(width, width, 3), nn.Conv2d(width, 1, 1))

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        merged = self.laterals[-1](taps[-1])
        for lateral, tap in zip(reversed(self.laterals[:-1]), reversed(taps[:-1])):
            merged = nn.functional.interpolate(merged, scale_factor=2.0, mode="nearest") + lateral(tap)
        return self.head(merged)
