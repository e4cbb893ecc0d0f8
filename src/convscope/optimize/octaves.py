"""The multi-resolution (octave) schedule: optimize a small image first, then enlarge the result
and go on at the next size. Coarse structure settles at the small sizes, where a step moves
large regions; details are added at the large ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.objectives import Objective
from convscope.models.model import Model, as_model
from convscope.optimize.params import make_param
from convscope.optimize.render import Rendering, render


def octave_sizes(size: tuple[int, int], octaves: int, scale: float = 1.4) -> list[tuple[int, int]]:
    """``octaves`` sizes, smallest first, each ``scale`` times the previous, ending at ``size``."""
    return [(max(8, round(size[0] / scale**k)), max(8, round(size[1] / scale**k))) for k in reversed(range(octaves))]


def render_octaves(model: Model | nn.Module, objective: Objective, kind: str, batch: int, size: tuple[int, int], *,
                   octaves: int = 3, scale: float = 1.4, steps: int = 256, start: str = "noise",
                   seed: int = 0, transforms_for=None, **options) -> Rendering:
    """Renders at each octave size in turn (``steps`` split evenly), starting each octave from the
    previous result enlarged (bilinear) in a fresh parametrization of ``kind``.

    Args:
        transforms_for: ``size -> Transform`` giving the transforms of each octave (None: none).
        options: passed to :func:`~convscope.optimize.render.render` (optimizer, lr, priors, ...).

    Returns:
        The final octave's :class:`Rendering` with the scores of every octave, ``(steps, B)``.
    """
    model = as_model(model)
    generator = torch.Generator().manual_seed(seed)
    image: torch.Tensor | str = start
    scores, result = [], None
    for k, hw in enumerate(octave_sizes(size, octaves, scale)):
        if isinstance(image, torch.Tensor):
            image = F.interpolate(image, size=hw, mode="bilinear", align_corners=False)
        param = make_param(kind, batch, hw, start=image, center=torch.tensor(model.mean), generator=generator,
                           device=model.device)
        result = render(model, objective, param, steps=max(1, steps // octaves), seed=seed + k,
                        transforms=transforms_for(hw) if transforms_for else None, **options)
        scores.append(result.scores)
        image = result.images
        if result.interrupted:
            break
    result.scores = torch.cat(scores)
    return result
