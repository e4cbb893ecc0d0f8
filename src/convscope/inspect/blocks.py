"""Building blocks (Olah et al. 2018): neuron groups, what each looks like, and how much each
gives to the class.

Each group of :func:`~convscope.inspect.groups.neuron_groups` is shown three ways: where it is
active in the image, its feature visualization (the image that points the layer's activations
along its direction, all groups rendered as one batch), and its share of the class score: the
layer's Integrated Gradients (:mod:`convscope.attribute.layer`) summed over channels, and at
each position split over the groups by their part of the activations there; the shares add up
to the attribution of every position the groups cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribute.layer import LayerAttribution, layer_attribution
from convscope.core.objectives import Objective, direction
from convscope.core.render import Picture, grid, overlay, picture
from convscope.inspect.groups import NeuronGroups, neuron_groups
from convscope.models.model import Model, as_model
from convscope.optimize.visualize import visualize


@dataclass
class BuildingBlocks:
    """Neuron groups with their visualizations and their attribution.

    Attributes:
        groups: the factorization; attribution: the layer's Integrated Gradients.
        scores: ``(k,)`` each group's share of ``score - baseline``.
        visualizations: ``(k, 3, s, s)`` each group's feature visualization.
    """

    groups: NeuronGroups
    attribution: LayerAttribution
    scores: torch.Tensor
    visualizations: torch.Tensor

    def picture(self) -> Picture:
        """Top row: the image, then each group's map over it; bottom row: the class attribution
        over the image (red for, blue against), then each group's visualization."""
        image = self.groups.image
        spatial = self.attribution.spatial[0]
        scale = float(spatial.abs().max().clamp_min(1e-12))
        top = [image] + [overlay(image, heat) for heat in self.groups.maps]
        bottom = [overlay(image, spatial, cmap="bwr", vmin=-scale, vmax=scale)] + \
            [F.interpolate(v[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
             for v in self.visualizations]
        shares = ", ".join(f"group {k + 1}: {float(s):+.2f}" for k, s in enumerate(self.scores))
        caption = (f"{self.attribution.objective.name} at {self.groups.layer}: {len(self.scores)} neuron groups "
                   f"(NMF error {self.groups.error:.0%}); attribution {shares} (sum {float(self.scores.sum()):.2f}; "
                   f"zeroing the layer lowers the score by {self._total():.2f})")
        return picture(grid(torch.stack(top + bottom), columns=len(top), padding=4), caption,
                       scores=self.scores.tolist(), error=self.groups.error)

    def _total(self) -> float:
        return float(self.attribution.score[0] - self.attribution.baseline[0])


def building_blocks(model: Model | nn.Module, x: torch.Tensor, layer: str,
                    target: int | str | torch.Tensor | Objective | None = None, *, groups: int = 6,
                    steps: int = 32, size: int = 96, render_steps: int = 128, seed: int = 0) -> BuildingBlocks:
    """The building blocks of ``target`` (top class by default) at ``layer`` for one image ``x``
    ``(1, 3, H, W)``: ``groups`` NMF groups, ``steps`` Integrated-Gradients points, visualizations
    of ``size`` pixels after ``render_steps`` steps."""
    model = as_model(model)
    found = neuron_groups(model, x, layer, groups=groups, seed=seed)
    attribution = layer_attribution(model, x, layer, target, steps=steps)
    shares = found.contributions / found.contributions.sum(0, keepdim=True).clamp_min(1e-12)  # (k, h, w)
    scores = (shares * attribution.spatial[0]).sum((1, 2))
    shown = visualize(model, direction(layer, found.directions, cossim_power=1.0), batch=groups, size=size,
                      steps=render_steps, seed=seed)
    return BuildingBlocks(found, attribution, scores, shown.images)
