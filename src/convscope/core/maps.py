"""How a layer's output is read as ``(C, h, w)`` maps, whatever the architecture.

The one place that decides it, for activations, CAMs, top activations and codes:

* ``channels-first`` — a convolution's ``(B, C, h, w)``;
* ``channels-last`` — ``(B, h, w, C)`` stages (Swin, ConvNeXt blocks in timm's NHWC mode);
* ``tokens`` — a transformer's ``(B, prefix + h*w, D)`` sequence: the ``prefix`` tokens (class,
  distillation, registers) are dropped and the rest laid out on the patch grid.

The reading is inferred from the output's shape and the image's: spatial sides must be a
plausible downsampling of the image (the same stride on both axes, within rounding), and a
token count must be a few prefix tokens plus a grid of the image's aspect ratio. Where a 4-D
output fits both orders (only when its channel count could itself be a side), channels-first wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

READINGS = ("channels-first", "channels-last", "tokens")
MAX_PREFIX = 8


@dataclass(frozen=True)
class MapReading:
    """How to turn an output into ``(B, C, h, w)`` maps.

    Attributes:
        kind: one of :data:`READINGS`.
        grid: ``(h, w)`` of the maps.
        prefix: tokens before the grid (``tokens`` only).
    """

    kind: str
    grid: tuple[int, int]
    prefix: int = 0

    def maps(self, output: torch.Tensor) -> torch.Tensor:
        """``output`` as ``(B, C, h, w)`` (a view where possible; differentiable)."""
        if self.kind == "channels-first":
            return output
        if self.kind == "channels-last":
            return output.permute(0, 3, 1, 2)
        tokens = output[:, self.prefix:]
        return tokens.transpose(1, 2).reshape(len(output), output.shape[-1], *self.grid)


def reading_of(shape: tuple[int, ...] | torch.Size, image: tuple[int, int]) -> MapReading | None:
    """The reading of an output of ``shape`` ``(B, ...)`` for an ``image`` ``(H, W)``, or None when it
    is no map (a vector, logits, attention weights of another shape)."""
    shape = tuple(shape)
    if len(shape) == 4:
        if _plausible(shape[2:], image):
            return MapReading("channels-first", shape[2:])
        if _plausible(shape[1:3], image):
            return MapReading("channels-last", shape[1:3])
        return None
    if len(shape) == 3:
        return _tokens(shape[1], image)
    return None


def as_maps(output: torch.Tensor, image: tuple[int, int]) -> torch.Tensor | None:
    """``output`` as ``(B, C, h, w)`` maps for an ``image`` ``(H, W)``, or None when it is no map."""
    reading = reading_of(output.shape, image)
    return None if reading is None else reading.maps(output)


def _plausible(grid: tuple[int, int], image: tuple[int, int]) -> bool:
    """Whether ``grid`` ``(h, w)`` could be the image downsampled by one stride on both axes: ``w``
    within rounding (one cell) of the width that ``h`` implies."""
    h, w = grid
    if not (1 <= h <= image[0] and 1 <= w <= image[1]):
        return False
    return abs(w - image[1] * h / image[0]) <= 1


def _tokens(count: int, image: tuple[int, int]) -> MapReading | None:
    """A token count as prefix + grid of the image's aspect ratio, the fewest prefix tokens first."""
    for prefix in range(min(MAX_PREFIX, count - 1) + 1):
        cells = count - prefix
        h = round(math.sqrt(cells * image[0] / image[1]))
        if h >= 1 and cells % h == 0 and _plausible((h, cells // h), image):
            return MapReading("tokens", (h, cells // h), prefix)
    return None
