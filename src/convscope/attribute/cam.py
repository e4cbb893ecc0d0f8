"""Class activation maps weighted by gradients: Grad-CAM, Grad-CAM++ and guided Grad-CAM."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribute.core import attribute, layer_gradient
from convscope.core.maps import reading_of
from convscope.core.objectives import Objective
from convscope.core.summary import feature_maps
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model


def grad_cam(model: Model | nn.Module, x: torch.Tensor, objective: Objective, layer: str | None = None, *,
             plus_plus: bool = False) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391) or Grad-CAM++ (Chattopadhay et al. 2018).

    Each channel of ``layer`` is weighted by its spatially averaged gradient (Grad-CAM) or by
    positive gradients weighted with the closed-form alphas (Grad-CAM++); the weighted sum is
    rectified and upsampled to the input.

    Args:
        layer: a layer whose output reads as maps (:mod:`convscope.core.maps`: convolutional,
            channels-last or tokens); :func:`last_spatial_layer` when omitted.

    Returns:
        ``(B, H, W)`` non-negative map at input resolution.
    """
    model = as_model(model)
    layer = layer or last_spatial_layer(model)
    acts, grad = layer_gradient(model, x, objective, layer)
    reading = reading_of(acts.shape, tuple(x.shape[-2:]))  # the aspect ratio decides: any resize keeps it
    if reading is None:
        raise ConvscopeError(f"Grad-CAM needs a layer whose output reads as (C, h, w) maps; {layer!r} gives "
                             f"{tuple(acts.shape[1:])}; the default is {last_spatial_layer(model)!r}")
    acts, grad = reading.maps(acts), reading.maps(grad)
    weights = _plus_plus_weights(acts, grad) if plus_plus else grad.mean(dim=(2, 3))
    cam = torch.relu((weights[:, :, None, None] * acts).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def _plus_plus_weights(acts: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights, eq. 19 of the paper with the exponential of the score."""
    g2, g3 = grad.pow(2), grad.pow(3)
    denominator = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(grad != 0, g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator)),
                        torch.zeros_like(grad))
    return (alpha * torch.relu(grad)).sum(dim=(2, 3))


def guided_grad_cam(model: Model | nn.Module, x: torch.Tensor, objective: Objective,
                    layer: str | None = None) -> torch.Tensor:
    """Guided backprop times the Grad-CAM map (Selvaraju et al. 2017): ``(B, C, H, W)``."""
    cam = grad_cam(model, x, objective, layer)
    return attribute(model, x, objective, rule="guided") * cam[:, None]


def last_spatial_layer(model: Model | nn.Module) -> str:
    """The network's last feature map (:func:`~convscope.core.summary.feature_maps`): on a CNN its last
    block, on a transformer the last block's normalized tokens."""
    maps = feature_maps(model)
    if not maps:
        raise ConvscopeError("the model has no layer whose output reads as a spatial (C, h, w) map")
    return maps[-1].name
