"""Image priors applied between steps on raw pixels (Yosinski et al. 2015, "Understanding Neural
Networks Through Deep Visualization"): each one pulls the image toward what natural images look
like. Each prior edits a :class:`~convscope.optimize.params.PixelImage` in place after the
optimizer step, given the step number and the gradient of the loss w.r.t. the pixels.
"""

from __future__ import annotations

import torch

from convscope.core.smoothing import gaussian_blur


class Prior:
    """Base class: ``prior(pixels, grad, step)`` edits ``pixels`` ``(B, 3, H, W)`` in place."""

    center: float = 0.5

    def __call__(self, pixels: torch.Tensor, grad: torch.Tensor | None, step: int) -> None:
        raise NotImplementedError


class Decay(Prior):
    """L2 decay: ``x <- center + (1 - rate) (x - center)`` each step."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, pixels, grad, step):
        pixels.sub_(self.center).mul_(1 - self.rate).add_(self.center)


class Blur(Prior):
    """Gaussian blur of width ``sigma`` pixels every ``every`` steps (removes high frequencies)."""

    def __init__(self, sigma: float, every: int = 4) -> None:
        self.sigma, self.every = sigma, every

    def __call__(self, pixels, grad, step):
        if self.sigma > 0 and step % self.every == 0:
            pixels.copy_(gaussian_blur(pixels, self.sigma))


class ClipNorm(Prior):
    """Sets to ``center`` the pixels whose color norm (distance to center) is in the lowest ``percentile``."""

    def __init__(self, percentile: float) -> None:
        self.percentile = percentile

    def __call__(self, pixels, grad, step):
        _clip_lowest(pixels, (pixels - self.center).norm(dim=1), self.percentile, self.center)


class ClipContribution(Prior):
    """Sets to ``center`` the pixels whose first-order contribution to the objective,
    ``sum_c |(x - center) * grad|``, is in the lowest ``percentile``."""

    def __init__(self, percentile: float) -> None:
        self.percentile = percentile

    def __call__(self, pixels, grad, step):
        if grad is not None:
            _clip_lowest(pixels, ((pixels - self.center) * grad).abs().sum(dim=1), self.percentile, self.center)


def yosinski_priors(decay: float = 0.01, blur_sigma: float = 0.5, blur_every: int = 4,
                    norm_percentile: float = 20.0, contribution_percentile: float = 0.0) -> list[Prior]:
    """A set of Yosinski et al.'s priors (their table 1 lists the combinations they found best)."""
    priors: list[Prior] = [Decay(decay), Blur(blur_sigma, blur_every)]
    if norm_percentile:
        priors.append(ClipNorm(norm_percentile))
    if contribution_percentile:
        priors.append(ClipContribution(contribution_percentile))
    return priors


def _clip_lowest(pixels: torch.Tensor, values: torch.Tensor, percentile: float, center: float) -> None:
    """Sets ``pixels`` to ``center`` where ``values`` ``(B, H, W)`` is below its percentile (per image)."""
    threshold = torch.quantile(values.flatten(1), percentile / 100, dim=1).view(-1, 1, 1)
    pixels.masked_fill_((values < threshold)[:, None].expand_as(pixels), center)
