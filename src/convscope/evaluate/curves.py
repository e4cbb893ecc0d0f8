"""Deletion and insertion curves (Petsiuk et al. 2018, arXiv:1806.07421): pixels are removed from
the image (or added to a blank one) in the order of the map, most important first, and the score
of what was explained (a class, or a task's target: :mod:`convscope.evaluate.scores`) is read after
each step. A map that finds what the model uses makes the score fall fast (deletion: lower area is
better) and rise fast (insertion: higher area is better)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from convscope.core.objectives import Objective
from convscope.core.smoothing import gaussian_blur
from convscope.errors import ConvscopeError, unknown_choice
from convscope.evaluate.scores import Target, check_target, chunk_size, target_scores
from convscope.models.model import Model

#: The image that removed pixels take from: named fills, or a number (a flat grey level).
FILLS = ("black", "blur", "mean")


@dataclass
class Curve:
    """Scores along a perturbation.

    Attributes:
        fractions: ``(S,)`` share of the pixels changed at each point, increasing.
        scores: ``(B, S)`` the score of each image's target at each point.
    """

    fractions: torch.Tensor
    scores: torch.Tensor

    @property
    def auc(self) -> torch.Tensor:
        """``(B,)`` the mean score along the curve: the trapezoid area over the fractions, divided by
        their span (for deletion and insertion the span is 1, so this is Petsiuk's AUC)."""
        span = float(self.fractions[-1] - self.fractions[0]) or 1.0
        return torch.trapezoid(self.scores, self.fractions, dim=-1) / span


def deletion(model: Model, x: torch.Tensor, maps: torch.Tensor, target: Target, *, steps: int = 100,
             fill: str | float = "black", kind: str = "probability",
             callback: Callable[[float], None] | None = None) -> Curve:
    """Removes the most important pixels first, ``ceil(H*W / steps)`` per step, replacing them with
    ``fill``; the curve starts at the intact image and ends at the fill.

    Args:
        x: ``(B, C, H, W)`` images in [0, 1].
        maps: ``(B, H, W)`` importance of each pixel (larger is more important; ties keep pixel order).
        target: ``(B,)`` the class each image's score reads, or an objective of the output (a task's
            target, e.g. :func:`~convscope.attribute.targets.objective_for`'s).
        kind: for classes, ``probability`` (softmax), ``logit`` or ``correct`` (1 while the class
            stays on top).
        callback: receives the fraction of the curve's points scored (for one image).

    Returns:
        :class:`Curve` with ``S = ceil(H*W / per_step) + 1`` points.
    """
    return _curve(model, x, _fill(x, fill), maps, target, steps, kind, callback)


def insertion(model: Model, x: torch.Tensor, maps: torch.Tensor, target: Target, *, steps: int = 100,
              fill: str | float = "blur", kind: str = "probability",
              callback: Callable[[float], None] | None = None) -> Curve:
    """Puts the most important pixels first into ``fill`` (by default a strongly blurred copy, as in
    the paper); the curve starts at the fill and ends at the intact image. Arguments as :func:`deletion`."""
    return _curve(model, _fill(x, fill), x, maps, target, steps, kind, callback)


def order_ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(B, H*W)`` the rank of each pixel in descending importance (0 = most important)."""
    flat = maps.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return ranks


def _curve(model: Model, start: torch.Tensor, end: torch.Tensor, maps: torch.Tensor, target: Target,
           steps: int, kind: str, callback: Callable[[float], None] | None = None) -> Curve:
    """Scores of the images that take the ``k * per_step`` most important pixels from ``end`` and the
    rest from ``start``; more images than a forward pass takes go a few at a time (an objective's
    one at a time), so that each pass holds several steps of few images (small batches are fastest
    on a CPU)."""
    _check(start, maps, steps)
    check_target(target, len(start), kind)
    size = 1 if isinstance(target, Objective) else chunk_size(model)
    if len(start) > size:
        parts = [_curve(model, start[i:i + size], end[i:i + size], maps[i:i + size],
                        target.example(i) if size == 1 else target[i:i + size], steps, kind)
                 for i in range(0, len(start), size)]
        return Curve(parts[0].fractions, torch.cat([part.scores for part in parts]))
    pixels = maps[0].numel()
    per_step = math.ceil(pixels / steps)
    counts = torch.tensor([min(k * per_step, pixels) for k in range(math.ceil(pixels / per_step) + 1)])
    ranks = order_ranks(maps.detach().cpu()).view(len(maps), 1, 1, *maps.shape[1:])
    start, end = start.detach().cpu(), end.detach().cpu()
    per_chunk = max(1, chunk_size(model) // len(start))

    def batches():
        for first in range(0, len(counts), per_chunk):
            taken = ranks < counts[first:first + per_chunk].view(1, -1, 1, 1, 1)         # (B, k, 1, H, W)
            images = torch.where(taken, end[:, None], start[:, None])
            copies = taken.shape[1]
            yield images.flatten(0, 1), (target if isinstance(target, Objective) else
                                         target.cpu().repeat_interleave(copies))
            if callback:  # the chunk has been scored
                callback(min(1.0, (first + per_chunk) / len(counts)))
    scores = target_scores(model, batches(), kind=kind)
    return Curve(counts.float() / pixels, _steps_last(scores, len(start), per_chunk, len(counts)))


def _steps_last(scores: torch.Tensor, images: int, per_chunk: int, steps: int) -> torch.Tensor:
    """``(B, S)`` from scores made chunk by chunk, each chunk image-major over its steps."""
    pieces, offset = [], 0
    for first in range(0, steps, per_chunk):
        count = min(per_chunk, steps - first)
        pieces.append(scores[offset:offset + images * count].view(images, count))
        offset += images * count
    return torch.cat(pieces, 1)


def _fill(x: torch.Tensor, fill: str | float) -> torch.Tensor:
    """The image removed pixels take their values from."""
    if isinstance(fill, (int, float)):
        return torch.full_like(x, float(fill))
    if fill == "black":
        return torch.zeros_like(x)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if fill == "blur":
        return gaussian_blur(x, sigma=max(x.shape[-2:]) / 20)
    raise unknown_choice("fill", fill, [*FILLS, "a number"])


def _check(x: torch.Tensor, maps: torch.Tensor, steps: int) -> None:
    if maps.shape != (x.shape[0], *x.shape[2:]):
        raise ConvscopeError(f"maps must be (B, H, W) = {(x.shape[0], *x.shape[2:])} like the images; "
                             f"got {tuple(maps.shape)}")
    if steps < 1:
        raise ConvscopeError(f"steps must be at least 1, not {steps}")
