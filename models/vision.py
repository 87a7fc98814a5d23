"""Reference CNNs as ``torch.nn.Module`` factories, deterministic from a seed, torchvision-free.

Each one exercises graph patterns the passes must handle (see ``blocks``): residual Adds
(``resnet18_layout``, ``digits_resnet``), depthwise convs, squeeze-excite Muls, hard-swish and a
Concat (``mobilenetv3_style``), a Flatten + Linear after a spatial map (``flatten_classifier``), and
a per-pixel mask from a MobileNetV3-Large backbone through an upsampling neck (``mobilenetv3_mask_detector``,
the shape of PP-OCR's text detector).
``digits_resnet`` and ``digits_student`` are the demo's teacher and student for 32×32×1 digits.
``pool="mean"`` spells global pooling as ReduceMean + Reshape (what the dynamo exporter writes)
instead of GlobalAveragePool + Flatten.
"""

from __future__ import annotations

import torch
from torch import nn

from onnxcompress.models.blocks import BasicBlock, ClassifierHead, ConcatBranches, ConvBN, InvertedResidual, TopDownMaskHead
from onnxcompress.models.seeding import seeded

RESNET18_WIDTHS = (64, 128, 256, 512)


def resnet18_layout(num_classes: int = 1000, in_channels: int = 3, *, pool: str = "global", seed: int = 0) -> nn.Module:
    """ResNet-18's layout (7×7 stem, max-pool, 4 stages of 2 BasicBlocks, 64→512 channels)."""
    with seeded(seed):
        layers: list[nn.Module] = [ConvBN(in_channels, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage, width in enumerate(RESNET18_WIDTHS):
            layers += [BasicBlock(cin, width, 1 if stage == 0 else 2), BasicBlock(width, width)]
            cin = width
        layers.append(ClassifierHead(cin, num_classes, pool))
        return nn.Sequential(*layers).eval()


def mobilenetv3_style(num_classes: int = 10, in_channels: int = 3, *, pool: str = "global", seed: int = 0) -> nn.Module:
    """A small MobileNetV3-like net: hard-swish stem, inverted residuals with squeeze-excite, a Concat."""
    with seeded(seed):
        return nn.Sequential(
            ConvBN(in_channels, 16, 3, 2, act=nn.Hardswish),
            InvertedResidual(16, 16, 16, squeeze=True),
            InvertedResidual(16, 64, 24, stride=2, squeeze=False),
            InvertedResidual(24, 72, 24),
            ConcatBranches(24, 20),
            InvertedResidual(40, 120, 48, stride=2),
            ConvBN(48, 96, 1, act=nn.Hardswish),
            ClassifierHead(96, num_classes, pool),
        ).eval()


# MobileNetV3-Large's bottlenecks: (expanded width, output width, stride, squeeze-excite).
MOBILENETV3_LARGE_BLOCKS = (
    (16, 16, 1, False), (64, 24, 2, False), (72, 24, 1, False), (72, 40, 2, True), (120, 40, 1, True),
    (120, 40, 1, True), (240, 80, 2, False), (200, 80, 1, False), (184, 80, 1, False), (184, 80, 1, False),
    (480, 112, 1, True), (672, 112, 1, True), (672, 160, 2, True), (960, 160, 1, True), (960, 160, 1, True),
)


def mobilenetv3_large_layout(num_classes: int = 1000, in_channels: int = 3, *, seed: int = 0) -> nn.Module:
    """MobileNetV3-Large's widths, strides and squeeze-excite placement (3×3 depthwise and hard-swish throughout).

    The size of the mobile backbones OCR and detection models use (16→960 channels, 4.2 M parameters),
    where ``mobilenetv3_style`` is a toy of at most 120 channels.
    """
    with seeded(seed):
        layers, channels = _mobilenetv3_large_blocks(in_channels)
        layers += [ConvBN(channels[-1], 960, 1, act=nn.Hardswish), ClassifierHead(960, num_classes)]
        return nn.Sequential(*layers).eval()


def _mobilenetv3_large_blocks(in_channels: int) -> tuple[list[nn.Module], list[int]]:
    """The hard-swish stem and MobileNetV3-Large's inverted residuals, with each one's output channels."""
    layers: list[nn.Module] = [ConvBN(in_channels, 16, 3, 2, act=nn.Hardswish)]
    channels = [16]
    for hidden, cout, stride, squeeze in MOBILENETV3_LARGE_BLOCKS:
        layers.append(InvertedResidual(channels[-1], hidden, cout, stride, squeeze=squeeze))
        channels.append(cout)
    return layers, channels


MASK_DETECTOR_TAPS = (3, 6, 12, 15)  # backbone layers ending at strides 4, 8, 16 and 32


class MaskDetector(nn.Module):
    """A backbone run layer by layer, with the outputs of ``taps`` fed to a ``TopDownMaskHead``."""

    def __init__(self, backbone: nn.Sequential, taps: tuple[int, ...], tap_channels: list[int]):
        super().__init__()
        self.backbone, self.taps = backbone, taps
        self.head = TopDownMaskHead(tap_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for index, layer in enumerate(self.backbone):
            x = layer(x)
            if index in self.taps:
                features.append(x)
        return self.head(features)


def mobilenetv3_mask_detector(in_channels: int = 3, *, seed: int = 0) -> nn.Module:
    """MobileNetV3-Large's blocks with a top-down neck giving one logit per pixel at stride 4.

    The layout of PP-OCR's DB text detector (MobileNetV3 backbone, FPN-like neck with nearest
    upsampling, a probability map): depthwise convs, hard-swish and squeeze-excite, plus the
    ``Resize`` and cross-scale ``Add`` a classifier does not have.
    """
    with seeded(seed):
        layers, channels = _mobilenetv3_large_blocks(in_channels)
        detector = MaskDetector(nn.Sequential(*layers), MASK_DETECTOR_TAPS, [channels[i] for i in MASK_DETECTOR_TAPS])
        return detector.eval()


def flatten_classifier(num_classes: int = 10, in_channels: int = 1, input_size: int = 32, *, seed: int = 0) -> nn.Module:
    """Two strided convs, then Flatten + Linear over the whole ``input_size/4`` spatial map."""
    if input_size % 4:
        raise ValueError(f"input_size must be a multiple of 4, got {input_size}")
    with seeded(seed):
        side = input_size // 4
        return nn.Sequential(
            ConvBN(in_channels, 8, 3, 2),
            ConvBN(8, 16, 3, 2),
            nn.Flatten(),
            nn.Linear(16 * side * side, num_classes),
        ).eval()


def digits_resnet(num_classes: int = 10, width: int = 16, *, pool: str = "global", seed: int = 0) -> nn.Module:
    """The demo's teacher for 1×32×32 digits: a three-stage ResNet (``width``, 2×, 4× channels)."""
    with seeded(seed):
        return nn.Sequential(
            ConvBN(1, width, 3),
            BasicBlock(width, width),
            BasicBlock(width, 2 * width, 2),
            BasicBlock(2 * width, 4 * width, 2),
            ClassifierHead(4 * width, num_classes, pool),
        ).eval()


def digits_student(num_classes: int = 10, width: int = 8, *, pool: str = "global", seed: int = 0) -> nn.Module:
    """The demo's student: three strided conv-bn-relu layers (32→4 pixels) and the same head."""
    with seeded(seed):
        return nn.Sequential(
            ConvBN(1, width, 3, 2),
            ConvBN(width, 2 * width, 3, 2),
            ConvBN(2 * width, 4 * width, 3, 2),
            ClassifierHead(4 * width, num_classes, pool),
        ).eval()


def with_batch_statistics(module: nn.Module, shape: tuple[int, ...], *, samples: int = 64, seed: int = 0, inputs=None) -> nn.Module:
    """``module`` (in place, returned in eval mode) with BatchNorm statistics averaged over random inputs of ``shape``
    (or over the batch ``inputs``, for a deep net whose activations on real images grow far from those on noise).

    With their initial statistics (mean 0, variance 1) the untrained nets' activations shrink layer by
    layer until every input gets the same logits, so agreement with FP32 would measure nothing.
    """
    import torch

    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # a plain average over the batches seen
    with seeded(seed), torch.no_grad():
        module.train()
        module(torch.randn(samples, *shape) if inputs is None else inputs)
    return module.eval()
