"""Attribution at a hidden layer: which positions and which channels of a layer carry the class.

Integrated Gradients in activation space (the "spatial" and "channel" attribution of Olah et
al. 2018's building blocks): the layer's activations ``A`` are scaled from 0 to 1 and the rest
of the network, from the layer on, is differentiated at each point. ``A`` times the average
gradient splits ``f(A) - f(0)`` exactly (completeness) over every unit; summed over channels it
says where, summed over positions it says which channels.

Zero activations are the baseline. Where a normalization follows the layer (a LayerNorm that
makes the score the same for every positive scale of it), the score jumps at zero and the
attributions miss that jump: ``completeness`` then reads far from 1, which says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convscope.attribute.targets import objective_for
from convscope.core.forward import score
from convscope.core.hooks import capture, frozen, replaced
from convscope.core.objectives import Objective
from convscope.core.summary import map_layer
from convscope.models.model import Model, as_model

#: Points along the path per forward/backward (CPU, GPU).
CPU_CHUNK, GPU_CHUNK = 8, 64


@dataclass
class LayerAttribution:
    """Integrated Gradients at ``layer`` for a batch of images.

    Attributes:
        values: ``(B, C, h, w)`` each unit's share of ``score - baseline``.
        activations: ``(B, C, h, w)`` the layer's activations.
        gradients: ``(B, C, h, w)`` the objective's gradient averaged along the path.
        score, baseline: ``(B,)`` the objective with the layer's activations, and with them zeroed.
    """

    layer: str
    objective: Objective
    values: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor
    score: torch.Tensor
    baseline: torch.Tensor

    @property
    def spatial(self) -> torch.Tensor:
        """``(B, h, w)`` which positions support the objective (summed over channels)."""
        return self.values.sum(1)

    @property
    def channels(self) -> torch.Tensor:
        """``(B, C)`` which channels support it (summed over positions)."""
        return self.values.sum((2, 3))

    @property
    def completeness(self) -> torch.Tensor:
        """``(B,)`` the attributions' sum over ``score - baseline`` (1 when the path is integrated exactly)."""
        return self.values.sum((1, 2, 3)) / (self.score - self.baseline)


def layer_attribution(model: Model | nn.Module, x: torch.Tensor, layer: str,
                      target: int | str | torch.Tensor | Objective | None = None, *, steps: int = 32,
                      chunk_size: int | None = None) -> LayerAttribution:
    """Integrated Gradients of ``target`` (the top class by default) at ``layer`` for images ``x``
    ``(B, 3, H, W)`` in [0, 1], by the midpoint rule over ``steps`` points."""
    model = as_model(model)
    map_layer(model, layer, "layer attribution")
    x = x.to(model.device)
    objective = objective_for(model, x, target)
    parts = [_one(model, x[i:i + 1], layer, objective.example(i), steps, chunk_size) for i in range(len(x))]
    return LayerAttribution(layer, objective, *(torch.cat(values) for values in zip(*parts)))


def _one(model: Model, x: torch.Tensor, layer: str, objective: Objective, steps: int, chunk_size: int | None):
    size = chunk_size or (GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK)
    with frozen(model.net):
        with torch.no_grad():
            acts = capture(model, model.net, x, [layer], detach=True)[layer]
            full = score(model, x, objective)
            with replaced(model.net, layer, torch.zeros_like):
                empty = score(model, x, objective)
        total = torch.zeros_like(acts)
        for alphas in ((torch.arange(steps) + 0.5) / steps).split(size):
            points = (alphas.to(acts).view(-1, 1, 1, 1) * acts).requires_grad_(True)
            copies = x.expand(len(alphas), *x.shape[1:])  # one row per point throughout: some networks fix B
            # a copy, not the leaf itself: networks may add to the layer's output in place (ConvNeXt)
            with replaced(model.net, layer, lambda output, points=points: points.clone()), torch.enable_grad():
                (grad,) = torch.autograd.grad(score(model, copies, objective).sum(), points)
            total += grad.sum(0, keepdim=True)
    gradients = total / steps
    return (acts * gradients).cpu(), acts.cpu(), gradients.cpu(), full.cpu(), empty.cpu()
