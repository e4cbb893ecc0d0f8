"""The one optimization loop behind every method that changes the image.

parametrization -> image -> random transforms -> (resize if asked) -> model -> objective,
then an optimizer step on the parametrization, then the pixel priors. Every method of
``convscope.optimize`` (class and channel visualization, inversion, DeepDream, style, fooling
images) is a choice of these parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from convscope.core.denormals import flush_denormals
from convscope.core.forward import read
from convscope.core.fastpath import fast_layout, fast_model
from convscope.core.hooks import frozen
from convscope.core.objectives import INPUT, Objective
from convscope.core.render import Picture, grid, picture
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model
from convscope.optimize.params import ImageParam, PixelImage
from convscope.optimize.priors import Prior
from convscope.optimize.transforms import Transform

OPTIMIZERS = ("adam", "sgd", "lbfgs")
#: ``callback(step, images)``: ``images`` is a detached ``(B, 3, H, W)`` CPU copy.
FrameCallback = Callable[[int, torch.Tensor], None]


@dataclass
class Rendering:
    """The result of an optimization.

    Attributes:
        images: ``(B, 3, H, W)`` in [0, 1], on the CPU.
        scores: ``(steps, B)`` the objective at each step (before that step's update).
        interrupted: True when stopped by Ctrl-C (``images`` is the image at that moment).
        name: what was optimized.
    """

    images: torch.Tensor
    scores: torch.Tensor
    interrupted: bool
    name: str

    def picture(self, captions: Sequence[str] | None = None) -> Picture:
        """The images side by side (a grid for more than a few)."""
        caption = self.name + (" (interrupted)" if self.interrupted else "")
        if captions:
            caption += ": " + ", ".join(captions)
        final = self.scores[-1].tolist() if len(self.scores) else []
        return picture(grid(self.images, padding=4), caption, steps=len(self.scores), final_scores=final)

    def _repr_png_(self) -> bytes:
        return self.picture()._repr_png_()


def render(model: Model | nn.Module, objective: Objective, param: ImageParam, *, steps: int = 256,
           optimizer: str = "adam", lr: float = 0.05, transforms: Transform | None = None,
           priors: Sequence[Prior] = (), seed: int = 0, input_size: tuple[int, int] | None = None,
           progress: bool = False, callback: FrameCallback | None = None, every: int = 16) -> Rendering:
    """Maximizes ``objective`` over the images of ``param``.

    Args:
        model: a Model or network; frozen during the run and restored after (its batch norms
            run folded, see :mod:`convscope.core.folding`).
        objective: the ``(B,)`` score to maximize (one per image; the batch is optimized together).
        param: the parametrization (see :mod:`convscope.optimize.params`), on the model's device.
        steps: optimizer steps.
        optimizer: ``adam``, ``sgd`` (plain gradient steps, as Simonyan et al.) or ``lbfgs``.
        lr: learning rate (L-BFGS: its step size).
        transforms: random transforms applied before each forward (seeded per step).
        priors: pixel priors applied after each step (pixel parametrization only).
        seed: makes the run deterministic on the CPU.
        input_size: resize the transformed image to this size before the model; by default the
            image goes in at its own size.
        progress: show a progress bar; callback: receives ``(step, images)`` every ``every`` steps
            and after the last one.

    Returns:
        A :class:`Rendering`; on Ctrl-C, the image at that moment with ``interrupted=True``.
    """
    if steps < 1:
        raise ConvscopeError(f"steps must be 1 or more, got {steps}")
    if optimizer not in OPTIMIZERS:
        raise ConvscopeError(f"unknown optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
    if priors and not isinstance(param, PixelImage):
        raise ConvscopeError("pixel priors (decay, blur, clipping) need the pixel parametrization")
    model = fast_model(as_model(model), objective.layers, param.image().detach())
    step_fn = _Step(model, objective, param, transforms, seed, input_size)
    opt = _optimizer(optimizer, param.tensors, lr)
    scores, interrupted = [], False
    with frozen(model.net), flush_denormals():
        with torch.no_grad():  # a bad objective (channel out of range, ...) fails here, before the bar
            step_fn.scores()
        try:
            for step in tqdm(range(steps), desc=objective.name, disable=not progress, unit="step"):
                step_fn.step = step
                if optimizer == "lbfgs":
                    opt.step(step_fn)
                else:
                    step_fn()
                    opt.step()
                scores.append(step_fn.last_scores)
                _apply_priors(param, priors, step)
                if callback and ((step + 1) % every == 0 or step + 1 == steps):
                    callback(step + 1, param.image().detach().cpu())
        except KeyboardInterrupt:
            interrupted = True
    with torch.no_grad():
        images = param.image().detach().cpu().clamp(0, 1)
    return Rendering(images, torch.stack(scores) if scores else torch.zeros(0, len(images)), interrupted,
                     objective.name)


class _Step:
    """The loss closure for one step: forward with that step's transforms, backward, scores kept."""

    def __init__(self, model: Model, objective: Objective, param: ImageParam, transforms: Transform | None,
                 seed: int, input_size: tuple[int, int] | None) -> None:
        self.model, self.objective, self.param = model, objective, param
        self.transforms, self.seed, self.input_size = transforms, seed, input_size
        self.step, self.last_scores = 0, torch.zeros(0)
        self.layout: torch.memory_format | None = None

    def __call__(self) -> torch.Tensor:
        for tensor in self.param.tensors:
            tensor.grad = None
        scores = self.scores()
        loss = -scores.sum()
        loss.backward()
        self.last_scores = scores.detach().cpu()
        return loss

    def scores(self) -> torch.Tensor:
        """``(B,)`` the objective of the current image, through this step's transforms."""
        image = self.param.image()
        x = image
        if self.transforms is not None:  # the same draw for every closure call of one L-BFGS step
            x = self.transforms(x, torch.Generator().manual_seed(self.seed * 1_000_003 + self.step))
        if self.input_size is not None and tuple(x.shape[-2:]) != tuple(self.input_size):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        if self.layout is None:  # oneDNN convolutions run faster on channels-last input, where it proved itself
            self.layout = fast_layout(self.model, x.detach())
        x = x.contiguous(memory_format=self.layout)
        acts = read(self.model, x, self.objective)
        acts[INPUT] = image
        return self.objective(acts)


def _optimizer(name: str, tensors: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(tensors, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(tensors, lr=lr)
    return torch.optim.LBFGS(tensors, lr=lr, max_iter=1, history_size=20)


def _apply_priors(param: ImageParam, priors: Sequence[Prior], step: int) -> None:
    with torch.no_grad():
        param.project()
        if priors:
            pixels = param.image()
            for prior in priors:
                prior(pixels, pixels.grad, step)
            param.project()
