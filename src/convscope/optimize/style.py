"""Neural style transfer (Gatys, Ecker, Bethge, CVPR 2016): a photo's layout in a painting's textures.

The content is a layer's activations (where things are); the style is the Gram matrices of
several layers (which features fire together, wherever they are). The image is optimized to
match both, under a total-variation prior.

Gram matrices of networks other than VGG are said to stylize poorly: their activations are
peaky, so a few huge values dominate (Wang et al., CVPR 2021, "Rethinking and Improving the
Robustness of Image Style Transfer", who smooth them with a softmax over the whole feature map
before the Gram matrix: ``smoothing="softmax"``, scaled here by the number of elements so that
the value does not depend on the image size). Here each layer's style distance is instead
*relative* (divided by the squared norm of the style's own Gram matrix), so no layer and no
few channels dominate; with that, plain Gram matrices of EfficientNet-Lite0 stylize well and the
softmax made results worse in our comparison (README), so ``none`` is the default and
``softmax`` an option.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from convscope.core.hooks import capture, frozen
from convscope.core.images import resize
from convscope.core.summary import feature_maps
from convscope.core.objectives import (
    Objective,
    feature_match,
    gram,
    gram_match,
    total_variation,
)
from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.model import Model, as_model
from convscope.optimize.params import make_param
from convscope.optimize.render import FrameCallback, Rendering, render

SMOOTHINGS = ("none", "softmax")


@dataclass(frozen=True)
class StyleLayers:
    """Where content and style are read: one content layer, and style layers with weights."""

    content: str
    style: Mapping[str, float]


def default_layers(model: Model | nn.Module) -> StyleLayers:
    """Layers for a model: Gatys et al.'s for VGG-19 (torchvision layout), tuned ones for the
    EfficientNet family, and for any other network the output of each stage (each map size; the
    last five), filled up to five with feature maps spread over its depth when it has fewer stages
    (a vision transformer has one); content two thirds of the way down. Squeeze-excitation gates
    and attention internals are never picked (:func:`~convscope.core.summary.feature_maps`)."""
    model = as_model(model)
    names = dict(model.net.named_modules())
    if "_blocks.8" in names and "_conv_stem" in names:
        return StyleLayers("_blocks.8", {"_conv_stem": 1.0, "_blocks.1": 1.0, "_blocks.3": 1.0, "_blocks.5": 1.0,
                                         "_blocks.8": 1.0})
    if "features.29" in names and isinstance(names["features.28"], nn.Conv2d):  # VGG-19: relu1_1..relu5_1
        return StyleLayers("features.22", {f"features.{k}": 1.0 for k in (1, 6, 11, 20, 29)})
    maps = [info.name for info in feature_maps(model)]
    if not maps:
        raise ConvscopeError("style transfer needs layers whose outputs are maps of the image; this model has none")
    stages = list({info.reading.grid: info.name for info in feature_maps(model)}.values())  # each grid's last
    spread = [maps[round(k * (len(maps) - 1) / 4)] for k in range(5)]
    picks = sorted(set(stages[-5:]) | set(spread[:max(0, 5 - len(stages))]), key=maps.index)
    return StyleLayers(picks[(2 * len(picks)) // 3], dict.fromkeys(picks, 1.0))


def softmax_smoothing(a: torch.Tensor) -> torch.Tensor:
    """Wang et al.'s activation smoothing: ``(B, C, H, W)`` -> softmax over all ``C*H*W``
    elements of each example, times ``C*H*W`` (mean 1 whatever the size)."""
    flat = a.flatten(1)
    return (flat.softmax(1) * flat.shape[1]).view_as(a)


class StyleLoss:
    """The perceptual losses of one style image: Gram targets computed once, content targets per call.

    Args:
        model: the loss network.
        style: ``(1, 3, H, W)`` style image in [0, 1].
        layers: where content and style are read (:func:`default_layers` when None).
        smoothing: ``none`` or ``softmax`` (Wang et al.).
        size: ``(H, W)`` of the images to be compared: the style image is resized to the same
            number of pixels (its textures then have the scale they will have in the result).
    """

    def __init__(self, model: Model | nn.Module, style: torch.Tensor, layers: StyleLayers | None = None,
                 smoothing: str = "none", size: tuple[int, int] | None = None) -> None:
        self.model = as_model(model)
        self.layers = layers or default_layers(self.model)
        if smoothing not in SMOOTHINGS:
            raise unknown_choice("smoothing", smoothing, SMOOTHINGS)
        self.smooth = softmax_smoothing if smoothing == "softmax" else None
        if size is not None:
            style = resize(style, _same_area(style.shape[-2:], size))
        codes = self._codes(style, list(self.layers.style))
        self.grams = {layer: gram(self.smooth(codes[layer]) if self.smooth else codes[layer])
                      for layer in self.layers.style}

    def style(self) -> Objective:
        """Minus the weighted style distance (0 when every Gram matrix matches)."""
        terms = [weight * gram_match(layer, self.grams[layer], self.smooth)
                 for layer, weight in self.layers.style.items()]
        return functools.reduce(operator.add, terms)

    def content(self, content: torch.Tensor) -> Objective:
        """Minus the relative distance to ``content``'s ``(B, 3, H, W)`` code at the content layer."""
        return feature_match(self.layers.content, self._codes(content, [self.layers.content])[self.layers.content])

    def measure(self, image: torch.Tensor, content: torch.Tensor) -> dict[str, float]:
        """The style and content losses (positive; lower is closer) of ``image`` ``(1, 3, H, W)``."""
        objectives = {"style": self.style(), "content": self.content(content)}
        layers = [layer for objective in objectives.values() for layer in objective.layers]
        acts = self._codes(image, layers)
        return {name: -float(objective(acts)) for name, objective in objectives.items()}

    def _codes(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        with torch.no_grad(), frozen(self.model.net):
            return capture(self.model, self.model.net, x.to(self.model.device), list(dict.fromkeys(layers)))


def stylize(model: Model | nn.Module, content: torch.Tensor, style: torch.Tensor, *, size: int = 512,
            steps: int = 300, optimizer: str = "lbfgs", lr: float | None = None, start: str = "content",
            content_weight: float = 1.0, style_weight: float = 10.0, tv_weight: float = 1.0,
            layers: StyleLayers | None = None, smoothing: str = "none", octaves: int = 1,
            preserve_color: bool = False, seed: int = 0, progress: bool = False,
            callback: FrameCallback | None = None) -> Rendering:
    """Renders ``content`` ``(1, 3, H, W)`` in the style of ``style`` ``(1, 3, h, w)``, both in [0, 1].

    Args:
        size: the output's longer side (the content's aspect ratio is kept); the style image is
            resized to the same number of pixels, so its textures keep their scale.
        steps: optimizer steps in all (split over the octaves; one L-BFGS step is one evaluation).
        optimizer: ``lbfgs`` (Gatys et al.) or ``adam``; lr: its step size (1 and 0.02 by default).
        start: ``content`` or ``noise``.
        content_weight, style_weight, tv_weight: the loss weights (style per layer in ``layers``).
        octaves: more than 1 optimizes a smaller image first and enlarges it (coarse to fine).
        preserve_color: keep the content's colors (luminance transfer, Gatys et al. 2016b).
        seed: the starting noise; the same seed gives the same image on the CPU.

    Returns:
        A :class:`~convscope.optimize.render.Rendering` with the ``(1, 3, H', W')`` image.
    """
    if start not in ("content", "noise"):
        raise unknown_choice("start", start, ("content", "noise"))
    if optimizer not in ("lbfgs", "adam"):
        raise unknown_choice("optimizer", optimizer, ("lbfgs", "adam"))
    if content.shape[0] != 1 or style.shape[0] != 1:
        raise ConvscopeError("style transfer takes one content and one style image")
    model = as_model(model)
    lr = lr if lr is not None else (1.0 if optimizer == "lbfgs" else 0.02)
    generator = torch.Generator().manual_seed(seed)
    image, scores, result = None, [], None
    for k, hw in enumerate(_octave_sizes(content.shape[-2:], size, octaves)):
        scaled = resize(content, hw).to(model.device)
        loss = StyleLoss(model, style, layers, smoothing, size=hw)
        objective = (content_weight * loss.content(scaled) + style_weight * loss.style()
                     + tv_weight * total_variation())
        begin = resize(image, hw) if image is not None else (scaled if start == "content" else "noise")
        param = make_param("pixel", 1, hw, start=begin, center=torch.tensor(model.mean), generator=generator,
                           device=model.device)
        result = render(model, objective, param, steps=max(1, steps // octaves), optimizer=optimizer, lr=lr,
                        seed=seed + k, progress=progress, callback=callback)
        scores.append(result.scores)
        image = result.images
        if result.interrupted:
            break
    result.scores = torch.cat(scores)
    if preserve_color:
        result.images = keep_colors(result.images, resize(content, result.images.shape[-2:]).cpu())
    result.name = "style transfer"
    return result


def keep_colors(image: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """``image``'s luminance with ``content``'s chrominance (YIQ), both ``(B, 3, H, W)`` in [0, 1]."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    mixed = torch.cat([torch.einsum("ij,bjhw->bihw", to_yiq[:1], image),
                       torch.einsum("ij,bjhw->bihw", to_yiq[1:], content)], 1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_yiq), mixed).clamp(0, 1)


def _octave_sizes(shape, size: int, octaves: int) -> list[tuple[int, int]]:
    h, w = int(shape[0]), int(shape[1])
    scale = size / max(h, w)
    full = (max(8, round(h * scale)), max(8, round(w * scale)))
    return [(max(8, round(full[0] / 2**k)), max(8, round(full[1] / 2**k))) for k in reversed(range(octaves))]


def _same_area(shape, hw: tuple[int, int]) -> tuple[int, int]:
    scale = (hw[0] * hw[1] / (int(shape[0]) * int(shape[1]))) ** 0.5
    return max(8, round(int(shape[0]) * scale)), max(8, round(int(shape[1]) * scale))
