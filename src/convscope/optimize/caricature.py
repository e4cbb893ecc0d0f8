"""Caricatures (Lucid's, Olah et al. 2018): what a layer sees in a photo, exaggerated.

An image is optimized from noise so that, position by position, its activations at ``layer``
point the way the photo's do (dot product times cosine similarity): whatever the layer
represents in the photo is drawn again, without the rest, and pushed further.
"""

from __future__ import annotations

import torch
from torch import nn

from convscope.core.hooks import capture, frozen
from convscope.core.objectives import direction
from convscope.models.model import Model, as_model
from convscope.optimize.render import Rendering
from convscope.optimize.visualize import visualize


def caricature(model: Model | nn.Module, photo: torch.Tensor, layer: str, *, cossim_power: float = 1.0,
               **options) -> Rendering:
    """``(B, 3, H, W)`` caricatures of ``photo`` ``(B, 3, H, W)`` in [0, 1] at ``layer``, each the
    photo's size (``options`` as in :func:`~convscope.optimize.visualize.visualize`)."""
    model = as_model(model)
    with frozen(model.net), torch.no_grad():
        target = capture(model, model.net, photo.to(model.device), [layer], detach=True)[layer]
    options.setdefault("steps", 256)
    result = visualize(model, direction(layer, target, cossim_power=cossim_power), batch=len(photo),
                       size=tuple(photo.shape[-2:]), **options)
    result.name = f"caricature at {layer}"
    return result
