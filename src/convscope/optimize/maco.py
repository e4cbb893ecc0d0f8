"""MACO's importance map (Fel et al. 2023, arXiv:2306.06805), shown as transparency.

The parametrization itself, phases under a fixed natural magnitude spectrum, is
:class:`~convscope.optimize.params.MagnitudeImage` (``recipe="maco"`` in :func:`visualize`). The
importance map is the gradient of the objective with respect to the image, averaged in
magnitude over random transforms: where in the picture the unit's evidence lies.
"""

from __future__ import annotations

import torch

from convscope.core.forward import score
from convscope.core.hooks import frozen
from convscope.core.objectives import Objective
from convscope.core.render import Picture, grid, picture
from convscope.models.model import Model, as_model
from convscope.optimize.transforms import Transform, standard_transforms

def importance(model: Model, objective: Objective, images: torch.Tensor, *, samples: int = 16,
               transforms: Transform | None = None, seed: int = 0) -> torch.Tensor:
    """MACO's importance map: ``(B, H, W)`` in [0, 1], the magnitude of the objective's gradient
    w.r.t. ``images`` ``(B, 3, H, W)``, summed over colour and averaged over ``samples`` random
    transforms (the render loop's), scaled so each map's maximum is 1."""
    model = as_model(model)
    transforms = transforms or standard_transforms(scale=min(images.shape[-2:]) / 224)
    generator = torch.Generator().manual_seed(seed)
    x = images.detach().to(model.device).requires_grad_(True)
    total = torch.zeros(len(images), *images.shape[-2:])
    with frozen(model.net), torch.enable_grad():
        for _ in range(samples):
            seen = transforms(x, generator)
            (grad,) = torch.autograd.grad(score(model, seen, objective).sum(), x)
            total += grad.abs().sum(1).cpu()
    total = torch.nn.functional.avg_pool2d(total[:, None], 9, stride=1, padding=4, count_include_pad=False)[:, 0]
    return total / total.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)


def with_importance(images: torch.Tensor, weights: torch.Tensor, caption: str = "") -> Picture:
    """Each image beside itself faded to white where its importance is low (MACO's transparency)."""
    alpha = weights[:, None].clamp(0, 1).sqrt()
    faded = images * alpha + (1 - alpha)
    return picture(grid(torch.stack([images, faded], 1).flatten(0, 1), columns=2, padding=4), caption)

