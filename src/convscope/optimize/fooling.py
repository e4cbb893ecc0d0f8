"""Fooling images (Nguyen, Yosinski, Clune, CVPR 2015; the gradient version): images a person
sees as noise or an abstract pattern that the model labels as a chosen class with near certainty.

The render loop raises the target's log-probability from noise or a blank image. Without
priors the result looks like noise; with ``pattern=True`` it is optimized in the Fourier
parametrization under jitter, scale and rotation, which gives a regular pattern instead. The
image is rounded to 8 bits after every round of steps, and the loop goes on until the rounded
image reaches the confidence asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convscope.attribute.targets import class_indices
from convscope.core.objectives import class_log_probability
from convscope.core.render import Picture, grid, picture
from convscope.errors import ConvscopeError, unknown_choice
from convscope.inspect.predictions import probabilities
from convscope.models.model import Model, as_model
from convscope.optimize.adversarial import quantize
from convscope.optimize.params import make_param
from convscope.optimize.render import render
from convscope.optimize.transforms import standard_transforms

STARTS = {"noise": "noise", "blank": "grey"}


@dataclass
class Fooling:
    """Fooling images and how sure the model is of them.

    Attributes:
        images: ``(B, C, H, W)`` on the 8-bit grid; targets: ``(B,)``; confidence: ``(B,)`` the
        target's probability for the rounded image; steps: optimizer steps used.
    """

    images: torch.Tensor
    targets: torch.Tensor
    confidence: torch.Tensor
    steps: int
    names: list[str]

    def picture(self) -> Picture:
        caption = " | ".join(f"{name} {100 * p:.2f}%" for name, p in zip(self.names, self.confidence.tolist()))
        return picture(grid(self.images, padding=4), caption, confidence=self.confidence.tolist(), steps=self.steps)

    def _repr_png_(self) -> bytes:
        return self.picture()._repr_png_()


def fool(model: Model | nn.Module, targets, *, start: str = "noise", pattern: bool = False,
         confidence: float = 0.995, steps: int = 64, max_steps: int = 1024, seed: int = 0,
         progress: bool = False) -> Fooling:
    """Grows one image per class of ``targets`` (names or indices) until the model gives each
    at least ``confidence`` (checked on the 8-bit image), ``steps`` at a time, ``max_steps`` at most.

    Args:
        start: ``noise`` or ``blank`` (the model's mean color).
        pattern: Fourier parametrization with transforms (a pattern) instead of raw pixels (noise).

    Returns:
        A :class:`Fooling` at the model's input size.
    """
    if start not in STARTS:
        raise unknown_choice("start", start, STARTS)
    if not 0 < confidence < 1:
        raise ConvscopeError(f"confidence must be between 0 and 1, got {confidence}")
    model = as_model(model)
    names = targets if isinstance(targets, (list, tuple)) else [targets]
    goal = torch.cat([class_indices(model, torch.zeros(1, model.channels, 1, 1), name) for name in names])
    kind = "fourier" if pattern else "pixel"
    image, used, reached = STARTS[start], 0, torch.zeros(len(goal))
    generator = torch.Generator().manual_seed(seed)
    while used < max_steps:
        param = make_param(kind, len(goal), model.input_size, start=image, center=torch.tensor(model.mean).expand(3),
                           generator=generator, device=model.device)
        result = render(model, class_log_probability(goal), param, steps=steps, lr=0.05, seed=seed + used,
                        transforms=standard_transforms() if pattern else None, progress=progress)
        used += steps
        image = quantize(result.images)
        with torch.no_grad():
            reached = probabilities(model, image.to(model.device)).cpu().gather(1, goal[:, None])[:, 0]
        if bool((reached >= confidence).all()) or result.interrupted:
            break
    return Fooling(image, goal, reached, used, [model.label(int(g)) for g in goal])
