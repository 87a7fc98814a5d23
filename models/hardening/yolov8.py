"""A YOLOv8n-shaped detector, written after Ultralytics' ``yolov8n.yaml`` (Ultralytics is not a dependency).

The graph a YOLOv8 export has, which the simpler ``yolo-head`` lacks: C2f blocks (a 1x1 conv whose
output is split in two halves, bottlenecks chained on the second half, every piece concatenated),
SPPF (three chained 5x5 MaxPools concatenated with their input), a PAN neck (nearest upsampling,
Concats across scales), and the decoupled anchor-free head: per scale a box branch of ``4 x 16``
distance bins and a class branch, concatenated over the anchors, then DFL (softmax over the 16 bins
and a 1x1 conv with weights 0..15) and distances decoded against the anchor points and strides into
``cx, cy, w, h`` pixels, beside the sigmoid class scores: one ``[batch, 84, anchors]`` output as
YOLOv8's. Widths and depths are yolov8n's (scale n: depth 0.33, width 0.25); weights are seeded,
biases initialised as Ultralytics does, BatchNorm statistics come from photo crops (on noise
they leave activations in the hundreds on photos, and class scores saturated at 1); the images
and the detection fidelity are ``yolo-head``'s.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from onnxcompress.models.blocks import ConvBN
from onnxcompress.models.hardening import detector, exported, fidelity, photos
from onnxcompress.models.seeding import seeded

BINS = 16  # DFL's reg_max
STRIDES = (8, 16, 32)
SEED = 0
STATISTICS_SAMPLES = 16


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1) -> ConvBN:
    """Ultralytics' ``Conv``: convolution, BatchNorm, SiLU."""
    return ConvBN(cin, cout, kernel, stride, act=nn.SiLU)


class Bottleneck(nn.Module):
    """Two 3x3 convs, with the input added back when ``shortcut``."""

    def __init__(self, channels: int, shortcut: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3), conv(channels, channels, 3))
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + body(x)`` or ``body(x)``."""
        return x + self.body(x) if self.shortcut else self.body(x)


class C2f(nn.Module):
    """1x1 conv, split in halves, ``depth`` bottlenecks chained on the second half, all concatenated, 1x1 conv."""

    def __init__(self, cin: int, cout: int, depth: int, shortcut: bool = True) -> None:
        super().__init__()
        self.hidden = cout // 2
        self.cv1 = conv(cin, 2 * self.hidden)
        self.cv2 = conv((2 + depth) * self.hidden, cout)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden, shortcut) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ultralytics' ``C2f.forward``."""
        pieces = list(self.cv1(x).chunk(2, 1))
        pieces.extend(block(pieces[-1]) for block in self.blocks)
        return self.cv2(torch.cat(pieces, 1))


class SPPF(nn.Module):
    """1x1 conv, three chained 5x5 stride-1 MaxPools, the four concatenated, 1x1 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.cv1 = conv(cin, cin // 2)
        self.cv2 = conv(cin // 2 * 4, cout)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ultralytics' ``SPPF.forward``."""
        pieces = [self.cv1(x)]
        pieces.extend(self.pool(pieces[-1]) for _ in range(3))
        return self.cv2(torch.cat(pieces, 1))


class DetectHead(nn.Module):
    """Ultralytics' ``Detect`` at inference: per-scale box and class branches, DFL, boxes decoded in pixels."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        box_width, class_width = max(16, channels[0] // 4, 4 * BINS), max(channels[0], min(detector.CLASSES, 100))
        self.box = nn.ModuleList(nn.Sequential(conv(c, box_width, 3), conv(box_width, box_width, 3), nn.Conv2d(box_width, 4 * BINS, 1))
                                 for c in channels)
        self.cls = nn.ModuleList(nn.Sequential(conv(c, class_width, 3), conv(class_width, class_width, 3), nn.Conv2d(class_width, detector.CLASSES, 1))
                                 for c in channels)
        self.dfl = nn.Conv2d(BINS, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.dfl.weight[:] = torch.arange(BINS, dtype=torch.float32).view(1, BINS, 1, 1)
            for box, cls, stride in zip(self.box, self.cls, STRIDES):
                box[-1].bias[:] = 1.0
                cls[-1].bias[:] = math.log(5 / detector.CLASSES / (640 / stride) ** 2)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``[batch, 4 + CLASSES, anchors]``: ``cx, cy, w, h`` in pixels, then class scores."""
        batch = features[0].shape[0]
        raw = torch.cat([torch.cat([box(f), cls(f)], 1).view(batch, 4 * BINS + detector.CLASSES, -1)
                         for f, box, cls in zip(features, self.box, self.cls)], 2)
        distances, scores = raw.split((4 * BINS, detector.CLASSES), 1)
        anchors, strides = anchor_points(features)
        return torch.cat([self._boxes(distances, anchors) * strides, scores.sigmoid()], 1)

    def _boxes(self, distances: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """DFL's expected distances (left, top, right, bottom) around each anchor as ``cx, cy, w, h`` in grid units."""
        batch, _, count = distances.shape
        expected = self.dfl(distances.view(batch, 4, BINS, count).transpose(2, 1).softmax(1)).view(batch, 4, count)
        near, far = expected.chunk(2, 1)
        top_left, bottom_right = anchors - near, anchors + far
        return torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], 1)


def anchor_points(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ultralytics' ``make_anchors``: cell centres ``[2, anchors]`` in grid units and each anchor's stride ``[1, anchors]``."""
    points, strides = [], []
    for f, stride in zip(features, STRIDES):
        height, width = f.shape[2:]
        y, x = torch.meshgrid(torch.arange(height, dtype=f.dtype) + 0.5, torch.arange(width, dtype=f.dtype) + 0.5, indexing="ij")
        points.append(torch.stack((x, y), 0).view(2, -1))
        strides.append(torch.full((1, height * width), float(stride), dtype=f.dtype))
    return torch.cat(points, 1), torch.cat(strides, 1)


class YoloV8(nn.Module):
    """yolov8n: backbone (Conv and C2f stages, SPPF), PAN neck, ``Detect`` head on strides 8, 16 and 32."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv(3, 16, 3, 2), conv(16, 32, 3, 2), C2f(32, 32, 1))
        self.p3 = nn.Sequential(conv(32, 64, 3, 2), C2f(64, 64, 2))
        self.p4 = nn.Sequential(conv(64, 128, 3, 2), C2f(128, 128, 2))
        self.p5 = nn.Sequential(conv(128, 256, 3, 2), C2f(256, 256, 1), SPPF(256, 256))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top_down4, self.top_down3 = C2f(256 + 128, 128, 1, False), C2f(128 + 64, 64, 1, False)
        self.down3, self.bottom_up4 = conv(64, 64, 3, 2), C2f(64 + 128, 128, 1, False)
        self.down4, self.bottom_up5 = conv(128, 128, 3, 2), C2f(128 + 256, 256, 1, False)
        self.head = DetectHead((64, 128, 256))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[batch, 84, 2100]`` detections for ``[batch, 3, 320, 320]`` images in 0..1."""
        p3 = self.p3(self.stem(images))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        n4 = self.top_down4(torch.cat([self.up(p5), p4], 1))
        n3 = self.top_down3(torch.cat([self.up(n4), p3], 1))
        n4 = self.bottom_up4(torch.cat([self.down3(n3), n4], 1))
        n5 = self.bottom_up5(torch.cat([self.down4(n4), p5], 1))
        return self.head([n3, n4, n5])


def yolov8() -> YoloV8:
    """The seeded yolov8n with BatchNorm statistics of photo crops (of neither split), in eval mode."""
    from onnxcompress.models.vision import with_batch_statistics

    with seeded(SEED):
        model = YoloV8()
    crops = torch.from_numpy(photos.crops(STATISTICS_SAMPLES, detector.IMAGE_SIZE, seed=SEED).transpose(0, 3, 1, 2).copy())
    return with_batch_statistics(model, (3, detector.IMAGE_SIZE, detector.IMAGE_SIZE), seed=SEED, inputs=crops)


ENTRIES = exported.entries(
    "yolov8",
    "YOLOv8n-shaped detector (C2f, SPPF, PAN neck, DFL head; boxes + 80 class scores in one [1, 84, 2100] output)",
    yolov8,
    inputs=detector.images,
    output_names=["output0"],
    fidelity=fidelity.detections("output0", box_rows=detector.BOX_ROWS),
    requires=("scikit-learn", "matplotlib", "pillow"),
)
