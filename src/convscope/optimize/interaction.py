"""Neuron interaction (Olah et al. 2017, "Feature Visualization", section Interaction): a series
of images walking from one objective to another, sharing part of their parametrization so
that the series stays aligned and the steps in between show how the two features combine."""

from __future__ import annotations

import torch
from torch import nn

from convscope.core.objectives import Objective, interpolation
from convscope.models.model import Model, as_model
from convscope.optimize.params import FourierImage, SharedFourierImage
from convscope.optimize.render import Rendering, render
from convscope.optimize.transforms import standard_transforms


def interpolate(model: Model | nn.Module, first: Objective, second: Objective, *, count: int = 6,
                size: int = 128, steps: int = 256, lr: float = 0.05, seed: int = 0, **options) -> Rendering:
    """``count`` images ``(count, 3, size, size)``: image ``i`` maximizes
    ``(1 - t_i) first + t_i second`` with ``t`` from 0 to 1, all optimized together in one
    :class:`~convscope.optimize.params.SharedFourierImage` (``options``: those of
    :func:`~convscope.optimize.render.render`)."""
    model = as_model(model)
    weights = torch.linspace(0, 1, count)
    generator = torch.Generator().manual_seed(seed)
    start = torch.full((count, 3, size, size), 0.5) + 0.01 * torch.randn((count, 3, size, size), generator=generator)
    spectrum = FourierImage.from_image(start.clamp(0.01, 0.99)).spectrum.to(model.device)
    param = SharedFourierImage(spectrum, (size, size))
    result = render(model, interpolation(first, second, weights), param, steps=steps, lr=lr, seed=seed,
                    transforms=standard_transforms(scale=size / 224), **options)
    result.name = f"{first.name} to {second.name}"
    return result
