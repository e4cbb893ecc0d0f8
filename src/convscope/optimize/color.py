"""Color decorrelation for image parametrizations (Olah et al., Distill 2017).

Natural photos' RGB channels are strongly correlated. Optimizing in a space where they are not
(the square root of the color covariance, here measured on the bundled sample photos) makes
gradient steps change luminance and color separately, which gives far more natural images.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from convscope.samples import SAMPLES, sample_image


@lru_cache(maxsize=1)
def color_sqrt() -> torch.Tensor:
    """``(3, 3)`` matrix ``M`` with ``M @ M.T`` proportional to the RGB covariance of the sample
    photos, scaled so that its largest column has unit norm (decorrelated -> RGB)."""
    pixels = torch.cat([sample_image(name).flatten(2)[0].T for name in SAMPLES]).double()
    covariance = torch.cov(pixels.T)
    values, vectors = torch.linalg.eigh(covariance)
    root = vectors * values.clamp_min(0).sqrt()
    return (root / root.norm(dim=0).max()).float()


def to_rgb(decorrelated: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` decorrelated color -> RGB (before the squashing to [0, 1])."""
    return torch.einsum("ij,bjhw->bihw", color_sqrt().to(decorrelated), decorrelated)


def from_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_rgb`."""
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(color_sqrt()).to(rgb), rgb)
