"""Feature inversion (Mahendran & Vedaldi, CVPR 2015): which image has this code?

Start from noise and find pixels whose activations at a layer match the original image's, under
a total-variation prior (natural images are mostly smooth) and an L2 norm prior. What the
reconstruction keeps is what the layer keeps: run it from shallow to deep layers and the
details fade while the layout and the parts the network cares about remain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from convscope.core.hooks import capture, frozen
from convscope.core.metrics import ssim
from convscope.core.objectives import feature_match, l2, total_variation
from convscope.core.render import Picture, grid, picture
from convscope.models.model import Model, as_model
from convscope.optimize.params import make_param
from convscope.optimize.render import FrameCallback, Rendering, render


def invert(model: Model | nn.Module, x: torch.Tensor, layer: str, *, steps: int = 200, lr: float = 0.05,
           tv_weight: float = 10.0, l2_weight: float = 0.01, seed: int = 0, progress: bool = False,
           callback: FrameCallback | None = None) -> Rendering:
    """Reconstructs ``x`` ``(B, 3, H, W)`` in [0, 1] from its activations at ``layer``.

    Maximizes ``-|a(y) - a(x)|^2 / |a(x)|^2 - tv_weight * TV(y) - l2_weight * |y - mean|^2`` over
    pixels ``y`` starting from noise around the model's mean color (no jitter: the code is
    tied to positions).

    Returns:
        A :class:`~convscope.optimize.render.Rendering` with the ``(B, 3, H, W)`` reconstructions.
    """
    model = as_model(model)
    x = x.detach().to(model.device)
    with torch.no_grad(), frozen(model.net):
        code = capture(model, model.net, x, [layer])[layer]
    objective = feature_match(layer, code) + tv_weight * total_variation() + l2_weight * l2(center=model.mean)
    param = make_param("pixel", len(x), tuple(x.shape[-2:]), start="noise", center=torch.tensor(model.mean),
                       generator=torch.Generator().manual_seed(seed), device=model.device)
    result = render(model, objective, param, steps=steps, lr=lr, seed=seed,
                    progress=progress, callback=callback)
    result.name = f"inverted from {layer}"
    return result


@dataclass
class Ladder:
    """Reconstructions of one image from several layers.

    Attributes:
        original: ``(3, H, W)``; layers: the layers, shallow to deep; images: ``(L, 3, H, W)``;
        similarity: SSIM of each reconstruction to the original.
    """

    original: torch.Tensor
    layers: list[str]
    images: torch.Tensor
    similarity: list[float]

    def picture(self) -> Picture:
        """The original, then each layer's reconstruction."""
        tiles = torch.cat([self.original[None], self.images])
        caption = "original | " + " | ".join(f"{layer}: SSIM {s:.2f}" for layer, s in zip(self.layers, self.similarity))
        return picture(grid(tiles, columns=len(tiles), padding=4), caption, layers=self.layers,
                       ssim=self.similarity)

    def _repr_png_(self) -> bytes:
        return self.picture()._repr_png_()


def inversion_ladder(model: Model | nn.Module, x: torch.Tensor, layers: Sequence[str], **options) -> Ladder:
    """Inverts ``x`` ``(1, 3, H, W)`` from each of ``layers`` (``options`` as in :func:`invert`)."""
    images = torch.cat([invert(model, x, layer, **options).images for layer in layers])
    original = x[0].detach().cpu()
    return Ladder(original, list(layers), images, [ssim(image, original, data_range=1.0) for image in images])
