"""A YOLO-style detector whose one output holds box coordinates in pixels and class scores in 0..1.

YOLOv8's output layout ``[batch, 4 + 80, anchors]``: rows 0-3 are box centre and size in input
pixels (tens to hundreds), rows 4-83 sigmoid class scores (mostly near 0.1 here, from the usual
prior bias). A small SiLU conv backbone (strides 2-32) feeds a head at strides 8, 16 and 32 on a
320 x 320 image (2,100 anchors); boxes decode as in YOLOv5 (grid offset plus a bounded offset,
anchor size times a bounded scale). Weights are seeded, BatchNorm statistics come from random
inputs (``vision.with_batch_statistics``). This is the case where a whole-tensor cosine stays near
1 while the class scores collapse, so fidelity is the class agreement and box IoU of each image's
top-50 anchors. Inputs are photo crops scaled to 0..1, as Ultralytics feeds them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from onnxcompress.models.blocks import ConvBN
from onnxcompress.models.hardening import exported, fidelity, photos
from onnxcompress.models.hardening.entry import Entry, Feeds, split_seed
from onnxcompress.models.seeding import seeded

IMAGE_SIZE = 320
CLASSES = 80
BOX_ROWS = 4
STRIDES = (8, 16, 32)
WIDTHS = (16, 32, 64, 128, 256)  # backbone stages at strides 2, 4, 8, 16, 32
CLASS_PRIOR = 0.1
SEED = 0


class Head(nn.Module):
    """One scale: two convs, then ``4 + CLASSES`` channels decoded into pixel boxes and class scores."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.body = nn.Sequential(ConvBN(channels, channels, 3, act=nn.SiLU), nn.Conv2d(channels, BOX_ROWS + CLASSES, 1))
        with torch.no_grad():
            self.body[-1].bias[BOX_ROWS:] = -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[batch, 4 + CLASSES, height * width]``: ``cx, cy, w, h`` in pixels, then class scores."""
        raw = self.body(features)
        _, _, height, width = raw.shape
        rows = torch.arange(height, dtype=raw.dtype).view(1, 1, height, 1).expand(1, 1, height, width)
        cols = torch.arange(width, dtype=raw.dtype).view(1, 1, 1, width).expand(1, 1, height, width)
        offsets = raw[:, :BOX_ROWS].sigmoid()
        centre_x = (cols + offsets[:, 0:1] * 2 - 0.5) * self.stride
        centre_y = (rows + offsets[:, 1:2] * 2 - 0.5) * self.stride
        size = (offsets[:, 2:4] * 2) ** 2 * (4 * self.stride)
        decoded = torch.cat([centre_x, centre_y, size, raw[:, BOX_ROWS:].sigmoid()], dim=1)
        return decoded.flatten(2)


class Detector(nn.Module):
    """Backbone stages at strides 2-32, heads on the last three, anchors concatenated."""

    def __init__(self) -> None:
        super().__init__()
        stages, cin = [], 3
        for width in WIDTHS:
            stages.append(nn.Sequential(ConvBN(cin, width, 3, 2, act=nn.SiLU), ConvBN(width, width, 3, act=nn.SiLU)))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(Head(width, stride) for width, stride in zip(WIDTHS[-3:], STRIDES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[batch, 84, 2100]`` detections for ``[batch, 3, 320, 320]`` images in 0..1."""
        features = []
        for stage in self.stages:
            images = stage(images)
            features.append(images)
        return torch.cat([head(f) for head, f in zip(self.heads, features[-3:])], dim=2)


def detector() -> Detector:
    """The seeded detector with BatchNorm statistics, in eval mode."""
    from onnxcompress.models.vision import with_batch_statistics

    with seeded(SEED):
        model = Detector()
    return with_batch_statistics(model, (3, IMAGE_SIZE, IMAGE_SIZE), seed=SEED)


def images(split: str, count: int) -> Feeds:
    """``images``: photo crops ``[count, 3, 320, 320]`` in 0..1."""
    crops = photos.crops(count, IMAGE_SIZE, seed=6000 + split_seed(split))
    return {"images": crops.transpose(0, 3, 1, 2).copy()}


ENTRIES: list[Entry] = exported.entries(
    "yolo-head",
    "YOLO-style detector (SiLU conv backbone, 3-scale head, boxes + 80 class scores in one [1, 84, 2100] output)",
    detector,
    inputs=images,
    output_names=["output0"],
    fidelity=fidelity.detections("output0", box_rows=BOX_ROWS),
    requires=("scikit-learn", "matplotlib", "pillow"),
)
