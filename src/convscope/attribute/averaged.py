"""Integrated Gradients: the gradient averaged along a path from a baseline to the image.

It wraps any gradient rule and evaluates the many inputs in chunks, so memory stays bounded
while the batch dimension keeps the device busy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from convscope.attribute.core import attribute
from convscope.core.forward import score
from convscope.core.hooks import frozen
from convscope.core.objectives import Objective
from convscope.models.model import Model, as_model

#: Examples per forward/backward: 4 measured fastest on a 2-core CPU for the default model (2.58 s for
#: 50 IG steps vs 3.07 s at 16); larger batches keep GPUs busy.
CPU_CHUNK, GPU_CHUNK = 4, 128


def integrated_gradients(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, steps: int = 50,
                         baseline: torch.Tensor | float = 0.0, rule: str = "gradient", tolerance: float = 0.01,
                         max_steps: int = 400, chunk_size: int | None = None,
                         callback: Callable[[float], None] | None = None) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365) with adaptive steps.

    ``(x - baseline) * integral_0^1 grad f(baseline + a (x - baseline)) da`` by the trapezoid
    rule. Completeness says the attributions sum to ``f(x) - f(baseline)``; rectifier networks
    make the integrand kinked, so after ``steps`` uniform points the intervals whose ends
    differ most are bisected, ``steps`` at a time, until the sum is within ``tolerance`` of
    that difference or ``max_steps`` points were used.

    Args:
        objective: what to explain; each image is integrated alone, with its own part of a per-image
            objective (:meth:`Objective.example`).
        callback: called after each chunk of points with the fraction done so far, in (0, 1]
            (an estimate: the points added by bisection are counted when they are planned).

    Returns:
        ``(B, C, H, W)`` attributions.
    """
    model = as_model(model)
    parts = []
    for i, image in enumerate(x):
        report = None if callback is None else (lambda done, i=i: callback((i + done) / len(x)))
        parts.append(_integrate(model, image[None].detach().cpu(), objective.example(i), steps, baseline, rule,
                                tolerance, max_steps, chunk_size, report))
    return torch.cat(parts)


def _integrate(model: Model, x: torch.Tensor, objective: Objective, steps: int, baseline, rule: str,
               tolerance: float, max_steps: int, chunk_size: int | None, report) -> torch.Tensor:
    start = torch.as_tensor(baseline, dtype=x.dtype).expand_as(x)
    delta = (x - start)[0]
    target = float(_score(model, x, objective) - _score(model, start, objective))
    alphas = torch.linspace(0, 1, steps, dtype=torch.float64)
    counter = _Counter(report, steps)
    grads = _gradients_at(model, start, delta, alphas, objective, rule, chunk_size, counter)
    while True:
        slopes = (grads * delta).flatten(1).sum(1).double()       # d f / d alpha at each point
        widths = alphas.diff()
        weights = torch.zeros_like(alphas)
        weights[:-1] += widths / 2
        weights[1:] += widths / 2
        total = float((weights * slopes).sum())
        if abs(total - target) <= tolerance * abs(target) or len(alphas) >= max_steps:
            break
        worst = ((slopes.diff().abs() * widths).argsort(descending=True)[:steps]).sort().values
        middles = (alphas[worst] + alphas[worst + 1]) / 2
        counter.planned += len(middles)
        new = _gradients_at(model, start, delta, middles, objective, rule, chunk_size, counter)
        alphas, order = torch.cat([alphas, middles]).sort()
        grads = torch.cat([grads, new])[order]
    return (delta * (grads * weights.view(-1, 1, 1, 1).to(grads)).sum(0))[None]


class _Counter:
    """Counts the points evaluated against those planned, for the caller's progress callback."""

    def __init__(self, report, planned: int) -> None:
        self.report, self.planned, self.done = report, planned, 0

    def add(self, count: int) -> None:
        self.done += count
        if self.report:
            self.report(min(1.0, self.done / self.planned))


def _gradients_at(model, start, delta, alphas, objective, rule, chunk_size, counter: _Counter) -> torch.Tensor:
    points = start + alphas.view(-1, 1, 1, 1).to(start.dtype) * delta
    size = chunk_size or (GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK)
    grads = []
    for chunk in points.split(size):
        grads.append(attribute(model, chunk, objective, rule=rule).cpu())
        counter.add(len(chunk))
    return torch.cat(grads)


def _score(model: Model, x: torch.Tensor, objective: Objective) -> torch.Tensor:
    with torch.no_grad(), frozen(model.net):
        return score(model, x.to(model.device), objective)[0].cpu()
