"""DeepDream (Mordvintsev, Olah, Tyka 2015; google/deepdream): boost what a layer already sees.

Gradient ascent on the mean squared activation of a layer (or of one of its channels), starting
from a photo: whatever the layer faintly detects gets stronger, which makes it detected more
strongly still. Each step rolls the image by a random offset (so tile seams and the network's
stride grid never stay in one place) and moves the pixels along the gradient divided by its mean
absolute value (steps of a fixed size whatever the layer's scale). Octaves run the loop on a
shrunken copy first and carry the *detail* it added (dreamed minus original) up to the next
size, so patterns grow at several scales. The gradient of a large image is computed tile by
tile, which bounds memory by the tile size instead of the image size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

from convscope.core.denormals import flush_denormals
from convscope.core.forward import score
from convscope.core.fastpath import fast_model
from convscope.core.hooks import frozen
from convscope.core.images import resize
from convscope.core.objectives import Objective, layer_norm
from convscope.models.model import Model, as_model
from convscope.optimize.octaves import octave_sizes
from convscope.optimize.render import FrameCallback, Rendering


def dream(model: Model | nn.Module, image: torch.Tensor, layer: str, *, channel: int | torch.Tensor | None = None,
          octaves: int = 4, octave_scale: float = 1.4, steps: int = 20, step_size: float = 0.015,
          jitter: int = 32, tile: int = 512, seed: int = 0, progress: bool = False,
          callback: FrameCallback | None = None, every: int | None = None) -> Rendering:
    """Dreams ``image`` ``(B, 3, H, W)`` in [0, 1] at ``layer`` (or its ``channel``: one, or a
    ``(B,)`` tensor, one per image).

    Args:
        octaves: sizes processed, smallest first, each ``octave_scale`` times the previous; the
            last is the image's own size.
        steps: gradient steps per octave.
        step_size: pixels move by this much on average per step (the gradient divided by its
            mean absolute value).
        jitter: the random roll, up to this many pixels in each direction.
        tile: the gradient is computed on tiles at most this many pixels on a side.
        seed: the rolls; the same seed gives the same image on the CPU.
        callback: receives ``(step, images)`` after each octave, and every ``every`` steps if given.

    Returns:
        A :class:`~convscope.optimize.render.Rendering`: ``(B, 3, H, W)`` images at the input's
        resolution and the objective at each step, ``(octaves * steps, B)`` (each step's value
        is the mean over tiles).
    """
    objective = layer_norm(layer, channel)
    model = fast_model(as_model(model), objective.layers, image)
    original = image.detach().to(model.device).float()
    generator = torch.Generator().manual_seed(seed)
    ascend = _Ascent(model, objective, step_size, jitter, tile, generator)
    detail, dreamed, scores, interrupted = None, original, [], False
    bar = tqdm(total=octaves * steps, desc=f"dream {objective.name}", disable=not progress, unit="step")
    with frozen(model.net), flush_denormals(), bar:
        try:
            for k, size in enumerate(octave_sizes(tuple(original.shape[-2:]), octaves, octave_scale)):
                base = resize(original, size)
                detail = torch.zeros_like(base) if detail is None else resize(detail, size)
                dreamed = (base + detail).clamp(0, 1)
                for step in range(steps):
                    dreamed, values = ascend(dreamed)
                    scores.append(values)
                    bar.update()
                    if callback and every and (step + 1) % every == 0 and step + 1 < steps:
                        callback(k * steps + step + 1, dreamed.detach().cpu())
                detail = dreamed - base
                if callback:
                    callback((k + 1) * steps, dreamed.detach().cpu())
        except KeyboardInterrupt:
            interrupted = True
    images = resize(dreamed, tuple(original.shape[-2:])).detach().cpu()
    scores = torch.stack(scores) if scores else torch.zeros(0, len(images))
    what = "all channels" if channel is None else (f"channel {int(channel)}" if torch.as_tensor(channel).numel() == 1
                                                   else "one channel per image")
    return Rendering(images, scores, interrupted, f"DeepDream of {layer} ({what}, mean squared activation "
                     f"raised), {octaves} octave{'s' * (octaves > 1)} x {steps} steps")


class _Ascent:
    """One normalized, rolled, tiled gradient step."""

    def __init__(self, model: Model, objective: Objective, step_size: float, jitter: int, tile: int,
                 generator: torch.Generator) -> None:
        self.model, self.objective, self.step_size = model, objective, step_size
        self.jitter, self.tile, self.generator = jitter, tile, generator

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dy, dx = (torch.randint(-self.jitter, self.jitter + 1, (2,), generator=self.generator).tolist()
                  if self.jitter else (0, 0))
        rolled = x.roll((dy, dx), dims=(2, 3))
        grad, values = tiled(rolled, self.tile, self._gradient)
        grad = grad.roll((-dy, -dx), dims=(2, 3))
        scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (x + self.step_size * grad / scale).clamp(0, 1), values

    def _gradient(self, piece: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        piece = piece.detach().requires_grad_(True)
        values = score(self.model, piece, self.objective)
        (grad,) = torch.autograd.grad(values.sum(), piece)
        return grad, values.detach().cpu()


def tiled(x: torch.Tensor, tile: int, fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Applies ``fn`` (a ``(B, C, h, w)`` piece -> a same-shaped map and a ``(B,)`` value) to
    near-equal tiles of ``x`` ``(B, C, H, W)`` at most ``tile`` pixels on a side.

    Returns:
        The maps put back together ``(B, C, H, W)`` and the values averaged over the tiles ``(B,)``.
    """
    out = torch.empty_like(x)
    values = []
    for rows in _spans(x.shape[-2], tile):
        for cols in _spans(x.shape[-1], tile):
            out[..., rows, cols], value = fn(x[..., rows, cols])
            values.append(value)
    return out, torch.stack(values).mean(0)


def _spans(length: int, tile: int) -> list[slice]:
    count = -(-length // tile)
    edges = [round(k * length / count) for k in range(count + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]
