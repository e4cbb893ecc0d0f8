"""A detector and a segmenter of shapes (:mod:`convscope.data.scenes`): small heads on the default
model's frozen trunk, trained by ``scripts/train_shapes.py``, so that detection and segmentation
can be explained offline on a network that was trained for them. Only the heads' weights ship.

Both read EfficientNet-Lite0's blocks up to ``_blocks.10`` (stride 16, 112 channels; the segmenter
also ``_blocks.4``, stride 8, 40 channels) under the name ``backbone``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convscope.data.scenes import SHAPES

#: The trunk's last block, and the segmenter's finer one.
COARSE_BLOCK, FINE_BLOCK = 10, 4
#: Pixels per cell of the detector's grid.
STRIDE = 16


class Trunk(nn.Module):
    """EfficientNet-Lite0's stem and blocks ``0..COARSE_BLOCK``: ``(B, 3, H, W)`` normalized ->
    ``(B, 40, H/8, W/8)`` and ``(B, 112, H/16, W/16)``."""

    def __init__(self, lite: nn.Module) -> None:
        super().__init__()
        self._conv_stem, self._bn0 = lite._conv_stem, lite._bn0
        self._blocks = nn.ModuleList(list(lite._blocks)[:COARSE_BLOCK + 1])
        self._swish = lite._swish

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._swish(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index == FINE_BLOCK:
                fine = x
        return fine, x


class ShapesDetector(nn.Module):
    """One candidate box per 16-pixel cell, FCOS-style: ``(B, 3, H, W)`` normalized -> ``(B, N, 5 + K)``
    packed candidates (:mod:`convscope.models.detectors`): the box ``x1, y1, x2, y2`` from the cell
    centre and four predicted distances, objectness, class probabilities."""

    def __init__(self, backbone: Trunk) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Conv2d(112, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(64, 1 + len(SHAPES) + 4, 1))

    def raw(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, 112, h, w)`` trunk features -> ``(B, h*w, 1 + K + 4)``: objectness and class logits,
        log distances to the box's sides in cells."""
        return self.head(features).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[1]
        return decode(self.raw(features), features.shape[-2:])


def decode(raw: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The packed candidates ``(B, h*w, 5 + K)`` of raw head outputs ``(B, h*w, 1 + K + 4)``."""
    centres = cell_centres(grid).to(raw)
    distances = raw[..., -4:].clamp(max=6).exp() * STRIDE                   # left, top, right, bottom
    boxes = torch.cat([centres - distances[..., :2], centres + distances[..., 2:]], -1)
    return torch.cat([boxes, raw[..., :1].sigmoid(), raw[..., 1:-4].softmax(-1)], -1)


def cell_centres(grid: tuple[int, int]) -> torch.Tensor:
    """``(h*w, 2)`` each cell's centre ``x, y`` in pixels, row by row."""
    ys, xs = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    return (torch.stack([xs, ys], -1).view(-1, 2).float() + 0.5) * STRIDE


class ShapesSegmenter(nn.Module):
    """``(B, 3, H, W)`` normalized -> ``(B, 1 + K, H, W)`` logits (class 0 the background): the
    stride-16 features upsampled onto the stride-8 ones, a small head, upsampled to the input."""

    def __init__(self, backbone: Trunk) -> None:
        super().__init__()
        self.backbone = backbone
        self.coarse = nn.Conv2d(112, 48, 1)
        self.fine = nn.Conv2d(40, 48, 1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(48, 48, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(48, 1 + len(SHAPES), 1))

    def logits(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + K, h, w)`` at the stride-8 grid."""
        up = F.interpolate(self.coarse(coarse), size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(up + self.fine(fine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.logits(*self.backbone(x)), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


def heads(net: nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s trained weights: all but the trunk's (those come with the default model)."""
    return {name: value for name, value in net.state_dict().items() if not name.startswith("backbone.")}
