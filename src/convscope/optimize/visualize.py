"""What a class or a unit responds to: the image that maximizes it (activation maximization).

Four recipes, all the same render loop with different parts:

* ``fourier`` — Olah et al., Distill 2017: Fourier parametrization in decorrelated color, robust
  to jitter, scale and rotation, Adam. Recognizable objects on modern networks.
* ``maco`` — Fel et al. 2023: only the Fourier phases, the magnitude fixed to natural photos'
  (:class:`~convscope.optimize.params.MagnitudeImage`), with the same transforms; see
  :func:`~convscope.optimize.maco.importance` for its importance map.
* ``simonyan`` — Simonyan, Vedaldi, Zisserman 2014: raw pixels from the zero image (the model's
  mean color), the class logit minus an L2 penalty, plain gradient steps.
* ``yosinski`` — Yosinski et al. 2015: raw pixels, jitter, and the decay / blur / clipping priors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from convscope.attribute.targets import class_index, class_indices, objective_for
from convscope.core.layers import resolve
from convscope.core.objectives import Objective, channel, class_logit, diversity, l2, neuron, signed
from convscope.core.render import Picture, grid, picture
from convscope.core.task_objectives import box_similarity
from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.model import Model, as_model
from convscope.optimize.octaves import render_octaves
from convscope.optimize.priors import yosinski_priors
from convscope.optimize.render import FrameCallback, Rendering
from convscope.optimize.transforms import affine_transforms, jitter_only, standard_transforms


@dataclass(frozen=True)
class Recipe:
    """How to optimize: parametrization, start, optimizer, step size, robustness, priors."""

    param: str
    start: str
    optimizer: str
    lr: float
    transforms: str = "standard"  # one of TRANSFORMS
    l2_weight: float = 0.0
    priors: dict = field(default_factory=dict)
    steps: int = 256


MAX_SIDE = 2048
#: Random transforms by name: Olah et al.'s set in sequence, the same ranges in one resampling, a shift, none.
TRANSFORMS = ("standard", "affine", "jitter", "none")
RECIPES = {
    "fourier": Recipe("fourier", "noise", "adam", 0.05),
    "maco": Recipe("maco", "noise", "adam", 0.2),
    "simonyan": Recipe("pixel", "zero", "sgd", 0.5, transforms="none", l2_weight=3.0, steps=200),
    "yosinski": Recipe("pixel", "zero", "sgd", 0.5, transforms="jitter", priors=dict(decay=0.01, blur_sigma=0.5),
                       steps=200),
}


def visualize(model: Model | nn.Module, objective: Objective, *, batch: int = 1, recipe: str = "fourier",
              size: int | tuple[int, int] | None = None, steps: int | None = None, seed: int = 0,
              octaves: int = 1, input_size: tuple[int, int] | None = None, transforms: str | None = None,
              progress: bool = False, callback: FrameCallback | None = None) -> Rendering:
    """The ``batch`` images that maximize ``objective`` under a recipe (see the module docstring).

    Args:
        size: side (or ``(H, W)``) of the optimized image; the model's input size by default.
        steps: optimizer steps (the recipe's default when None).
        seed: start noise and transforms; the same seed gives the same image on the CPU.
        octaves: more than 1 optimizes at that many sizes, smallest first (see :mod:`.octaves`).
        input_size: resize to this before the model (a small image goes in at its own size).
        transforms: one of :data:`TRANSFORMS` instead of the recipe's (``affine`` is the fast
            equivalent of ``standard``).

    Returns:
        A :class:`~convscope.optimize.render.Rendering` with ``(batch, 3, H, W)`` images.
    """
    if recipe not in RECIPES:
        raise unknown_choice("recipe", recipe, RECIPES)
    if transforms is not None and transforms not in TRANSFORMS:
        raise unknown_choice("transforms", transforms, TRANSFORMS)
    model = as_model(model)
    settings = RECIPES[recipe]
    hw = _size(size or model.input_size)
    if settings.l2_weight:
        objective = objective + settings.l2_weight * l2(center=model.mean)
    options = dict(steps=steps or settings.steps, optimizer=settings.optimizer, lr=settings.lr, seed=seed,
                   priors=yosinski_priors(**settings.priors) if settings.priors else (),
                   input_size=input_size, progress=progress, callback=callback)
    return render_octaves(model, objective, settings.param, batch, hw, octaves=octaves, start=settings.start,
                          transforms_for=lambda size: _transforms(transforms or settings.transforms, size), **options)


def visualize_class(model: Model | nn.Module, classes: Sequence[int | str] | int | str, **options) -> Rendering:
    """One image per class (names or indices, optimized as one batch) maximizing its logit.

    ``options`` are those of :func:`visualize`.
    """
    model = as_model(model)
    names = [classes] if isinstance(classes, (int, str)) else list(classes)
    indices = torch.cat([class_indices(model, torch.zeros(1), name) for name in names])
    result = visualize(model, class_logit(indices), batch=len(indices), **options)
    result.name = "class " + ", ".join(model.label(int(i)) for i in indices)
    return result


def visualize_target(model: Model | nn.Module, target: str, **options) -> Rendering:
    """The image that maximizes a ``--target`` of the model's output (``sigmoid:CLASS``, ``up``,
    ``down``, ``region:CLASS[~OTHER]@MASK.png``: a segmenter's class over the mask's pixels). A box
    is drawn by :func:`visualize_box`.

    ``options`` are those of :func:`visualize`.
    """
    model = as_model(model)
    kind = target.partition(":")[0]
    if kind == "region" and "@" not in target:
        raise ConvscopeError("an optimized image has no predicted pixels to take a region from: give the region's "
                             "mask, region:CLASS@MASK.png")
    if kind in ("box", "similar", "different"):
        raise ConvscopeError(f"{kind}:... names a box or a reference of an image; to draw an object where a detector "
                             "will find it: --target CLASS --box X1,Y1,X2,Y2")
    blank = torch.full((1, model.channels, *model.input_size), 0.5, device=model.device)
    objective = objective_for(model, blank, target)
    result = visualize(model, objective, **options)
    result.name = objective.name.replace(" (outlined)", "")
    return result


def visualize_box(model: Model | nn.Module, box: Sequence[float], label: int | str, *, steps: int = 64,
                  transforms: str = "jitter", **options) -> Rendering:
    """An image in which a detector finds an object of class ``label`` at ``box`` ``(x1, y1, x2, y2)``
    (pixels of the model's input): the log of D-RISE's similarity to the box is maximized (the
    probabilities saturate on noise). Small shifts (``jitter``) keep the box in place; the larger
    ones of the default transforms blur where it is.

    ``options`` are those of :func:`visualize`.
    """
    model = as_model(model)
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
        raise ConvscopeError(f"a box is x1,y1,x2,y2 with x1 < x2 and y1 < y2, not {','.join(map(str, box))}")
    index = class_index(model, label)
    objective = box_similarity(torch.tensor([float(v) for v in box]), index).log()
    result = visualize(model, objective, steps=steps, transforms=transforms, **options)
    result.name = f"{model.label(index)} at {', '.join(f'{v:g}' for v in box)}"
    return result


def visualize_channel(model: Model | nn.Module, layer: str, channels: Sequence[int] | int, *,
                      position: tuple[int, int] | None = None, **options) -> Rendering:
    """One image per channel of ``layer`` maximizing its mean activation, or, with ``position``
    ``(y, x)``, the single unit there (``options`` as in :func:`visualize`; 128 px by default)."""
    model = as_model(model)
    resolve(model.net, layer)
    chosen = torch.tensor([channels] if isinstance(channels, int) else list(channels))
    objective = neuron(layer, chosen, *position) if position is not None else channel(layer, chosen)
    options.setdefault("size", 128)
    result = visualize(model, objective, batch=len(chosen), **options)
    result.name = f"{layer} channel{'s' if len(chosen) > 1 else ''} {', '.join(map(str, chosen.tolist()))}" + \
        (f" at {position}" if position is not None else "")
    return result


@dataclass
class ChannelViews:
    """What channels respond to, from one batched rendering.

    Attributes:
        layer: the layer; channels: ``(N,)`` its channels.
        positive: ``(N, 3, H, W)`` the images that excite each channel most.
        negative: ``(N, 3, H, W)`` the images that drive it lowest.
        diverse: ``(N, K, 3, H, W)`` K further images exciting it, pushed apart from each other.
    """

    layer: str
    channels: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    diverse: torch.Tensor

    @staticmethod
    def concatenate(parts: Sequence[ChannelViews]) -> ChannelViews:
        """The views of several renderings of one layer, their channels in order."""
        return ChannelViews(parts[0].layer, *(torch.cat([getattr(part, name) for part in parts])
                                              for name in ("channels", "positive", "negative", "diverse")))

    def picture(self, index: int = 0) -> Picture:
        """Channel ``index``: positive | negative | the diverse set, in one row."""
        tiles = torch.cat([self.positive[index:index + 1], self.negative[index:index + 1], self.diverse[index]])
        return picture(grid(tiles, columns=len(tiles), padding=4),
                       f"{self.layer} channel {int(self.channels[index])}: positive | negative | "
                       f"{len(self.diverse[index])} diverse")


def channel_views(model: Model | nn.Module, layer: str, channels: Sequence[int] | int, *, diverse: int = 4,
                  diversity_weight: float = 1.0, **options) -> ChannelViews:
    """Positive, negative and ``diverse`` further visualizations of each channel, all rendered as
    one batch of ``N * (2 + diverse)`` images (``options`` as in :func:`visualize`; 128 px by default).

    The diverse images maximize the channel plus ``diversity_weight`` times their Gram
    dissimilarity (minus a cosine similarity, in [-1, 0]) to the other diverse images of the
    same channel (Olah et al. 2017).
    """
    model = as_model(model)
    resolve(model.net, layer)
    chosen = torch.tensor([channels] if isinstance(channels, int) else list(channels))
    per = 2 + diverse
    index = chosen.repeat_interleave(per)
    role = torch.arange(per).repeat(len(chosen))                      # 0 positive, 1 negative, 2.. diverse
    signs = torch.where(role == 1, -1.0, 1.0)
    groups = torch.where(role >= 2, torch.arange(len(chosen)).repeat_interleave(per), -1)
    objective = signed(channel(layer, index), signs) + diversity_weight * diversity(layer, groups)
    options.setdefault("size", 128)
    images = visualize(model, objective, batch=len(index), **options).images
    images = images.view(len(chosen), per, *images.shape[1:])
    return ChannelViews(layer, chosen, images[:, 0], images[:, 1], images[:, 2:])


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if not 8 <= min(hw) <= max(hw) <= MAX_SIDE:
        raise ConvscopeError(f"image size {hw} is refused; give 8 to {MAX_SIDE} pixels a side")
    return hw


def _transforms(kind: str, size: tuple[int, int]):
    if kind in ("standard", "affine"):
        return (standard_transforms if kind == "standard" else affine_transforms)(scale=min(size) / 224)
    return jitter_only(max(1, min(size) // 28)) if kind == "jitter" else None
