"""Random transforms applied to the image before each forward pass of an optimization.

A visualization that only works at one exact pixel alignment is an adversarial pattern; asking
it to survive jitter, scaling and rotation (Mordvintsev et al. 2015, Olah et al. 2017) makes it
show features the network really uses. Each transform maps ``(B, C, H, W) -> (B, C, H', W')``
and draws its randomness from the ``torch.Generator`` it is given (one draw for the batch), so a
seeded run is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class Transform:
    """Base class: ``transform(x, generator) -> x'``."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class Pad(Transform):
    """Pads every side by ``pixels`` with a constant (grey by default)."""

    def __init__(self, pixels: int, value: float = 0.5) -> None:
        self.pixels, self.value = pixels, value

    def __call__(self, x, generator):
        return F.pad(x, (self.pixels,) * 4, value=self.value)


class Jitter(Transform):
    """Crops ``pixels`` rows and columns at a random offset (a random shift of up to ``pixels - 1``)."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels

    def __call__(self, x, generator):
        dy, dx = (int(v) for v in torch.randint(0, self.pixels, (2,), generator=generator))
        return x[..., dy:x.shape[-2] - self.pixels + dy, dx:x.shape[-1] - self.pixels + dx]


class RandomScale(Transform):
    """Resizes by a factor drawn from ``scales`` (bilinear)."""

    def __init__(self, scales: Sequence[float]) -> None:
        self.scales = list(scales)

    def __call__(self, x, generator):
        scale = self.scales[int(torch.randint(0, len(self.scales), (1,), generator=generator))]
        size = [max(1, round(side * scale)) for side in x.shape[-2:]]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class RandomRotate(Transform):
    """Rotates about the center by an angle in degrees drawn from ``angles`` (bilinear, border kept)."""

    def __init__(self, angles: Sequence[float]) -> None:
        self.angles = list(angles)

    def __call__(self, x, generator):
        angle = math.radians(self.angles[int(torch.randint(0, len(self.angles), (1,), generator=generator))])
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomAffine(Transform):
    """Shift, scale and rotation drawn at once and applied in one bilinear resampling that keeps
    the image's size; what comes into view from outside is ``fill`` grey.

    The same kinds of change as pad, jitter, scale and rotate in sequence at half their cost (16
    images of 128 px, forward and backward on 2 CPU cores: 10-12 ms against 22-24 ms a step),
    and with one input shape for every step, so the convolutions' plans are reused.
    Shifts are up to ``shift`` pixels each way, scales and angles (degrees) drawn from the lists.
    """

    def __init__(self, shift: int, scales: Sequence[float], angles: Sequence[float], fill: float = 0.5) -> None:
        self.shift, self.scales, self.angles, self.fill = shift, list(scales), list(angles), fill

    def __call__(self, x, generator):
        h, w = x.shape[-2:]
        scale = self.scales[int(torch.randint(0, len(self.scales), (1,), generator=generator))]
        angle = math.radians(self.angles[int(torch.randint(0, len(self.angles), (1,), generator=generator))])
        dy, dx = (int(v) - self.shift for v in torch.randint(0, 2 * self.shift + 1, (2,), generator=generator))
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        # output -> input in normalized coordinates; the aspect terms keep the rotation rigid
        theta = torch.tensor([[cos, -sin * h / w, 2 * dx / w], [sin * w / h, cos, 2 * dy / h]], dtype=x.dtype,
                             device=x.device)
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x - self.fill, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False) + self.fill


class Compose(Transform):
    """Applies transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x, generator):
        for transform in self.transforms:
            x = transform(x, generator)
        return x


#: Olah et al.'s draws: scales 0.9 to 1.1, angles -10 to 10 degrees with 0 weighted up.
SCALES = [1 + (i - 5) / 50 for i in range(11)]
ANGLES = list(range(-10, 11)) + 5 * [0]


def standard_transforms(scale: float = 1.0) -> Compose:
    """The robustness set of Olah et al. 2017 (pad 12, jitter 8, scale 0.9-1.1, rotate +-10 degrees,
    jitter 4), its pixel amounts multiplied by ``scale`` for images larger or smaller than ~224 px."""
    def px(n):
        return max(1, round(n * scale))
    return Compose([Pad(px(12)), Jitter(px(8)), RandomScale(SCALES), RandomRotate(ANGLES), Jitter(px(4))])


def affine_transforms(scale: float = 1.0) -> RandomAffine:
    """The ranges of :func:`standard_transforms` as one :class:`RandomAffine` at a fixed size:
    the same scales and angles, shifts up to 6 pixels times ``scale`` (as far as the padding
    lets grey show there)."""
    return RandomAffine(max(1, round(6 * scale)), SCALES, ANGLES)


def jitter_only(pixels: int) -> Compose:
    """Just a random shift (Yosinski et al. 2015; Mahendran & Vedaldi 2016)."""
    return Compose([Jitter(pixels)])
