"""How a map behaves under small changes of the input (Yeh et al. 2019, arXiv:1901.09392).

* Max-sensitivity: the largest relative change of the map, ``|Φ(x + δ) - Φ(x)| / |Φ(x)|``, over
  random ``δ`` in a small L∞ ball. Lower is better.
* Infidelity: how badly the map predicts the score's change under random perturbations ``I``:
  ``E[(Iᵀ Φ β - (f(x) - f(x - I)))²]`` with the best scale ``β`` (maps are compared up to scale).
  Lower is better.
"""

from __future__ import annotations

import torch

from convscope.evaluate.randomization import Explainer
from convscope.core.objectives import Objective
from convscope.evaluate.scores import Target, check_target, copy_scores
from convscope.models.model import Model


def max_sensitivity(model: Model, x: torch.Tensor, target: Target, explain: Explainer, *,
                    radius: float = 0.02, samples: int = 10, seed: int = 0) -> torch.Tensor:
    """``(B,)`` max over ``samples`` uniform draws ``δ`` in ``[-radius, radius]`` per pixel of the
    relative Frobenius change of the map."""
    generator = torch.Generator().manual_seed(seed)
    base = explain(model, x, target).detach().cpu().flatten(1)
    worst = torch.zeros(len(x))
    for _ in range(samples):
        delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * radius
        changed = explain(model, x + delta.to(x.device), target).detach().cpu().flatten(1)
        worst = torch.maximum(worst, (changed - base).norm(dim=1) / base.norm(dim=1).clamp_min(1e-12))
    return worst


def infidelity(model: Model, x: torch.Tensor, maps: torch.Tensor, target: Target, *, noise: float = 0.1,
               samples: int = 32, seed: int = 0) -> torch.Tensor:
    """``(B,)`` infidelity of ``maps`` ``(B, H, W)`` (spread over the channels) under Gaussian
    perturbations ``I`` of standard deviation ``noise``, with the map's best scale. The score is a
    class's logit, or a task target's objective."""
    check_target(target, len(x))
    generator = torch.Generator().manual_seed(seed)
    images = x.detach().cpu()
    perturbations = torch.randn((len(x), samples, *x.shape[1:]), generator=generator) * noise
    target = target if isinstance(target, Objective) else target.cpu()
    scores = copy_scores(model, images[:, None], target, kind="logit")[:, 0]
    changed = copy_scores(model, images[:, None] - perturbations, target, kind="logit")
    explained = (perturbations * maps.detach().cpu()[:, None, None]).flatten(2).sum(2)        # (B, samples)
    drops = scores[:, None] - changed
    beta = (explained * drops).mean(1) / (explained ** 2).mean(1).clamp_min(1e-12)
    return ((beta[:, None] * explained - drops) ** 2).mean(1)
