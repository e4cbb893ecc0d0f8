"""Gradients averaged over many inputs: SmoothGrad and Integrated Gradients.

Both wrap any gradient rule and evaluate the many inputs in chunks, so memory stays bounded
while the batch dimension keeps the device busy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from convscope.attribute.core import attribute
from convscope.core.objectives import Objective
from convscope.models.model import Model, as_model

#: Examples per forward/backward on the CPU (measured fastest for the default model) and on GPUs.
CPU_CHUNK, GPU_CHUNK = 16, 128


def smooth_grad(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, samples: int = 25,
                noise: float = 0.15, rule: str = "gradient", seed: int = 0, chunk_size: int | None = None
                ) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825): the gradient averaged over noisy copies.

    Args:
        samples: noisy copies per image.
        noise: noise standard deviation as a fraction of the image's value range.
        objective: must not depend on the batch position (e.g. one class for all images).

    Returns:
        ``(B, C, H, W)`` averaged gradient.
    """
    model = as_model(model)
    generator = torch.Generator().manual_seed(seed)
    spread = noise * (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True))
    copies = x.detach().cpu().repeat_interleave(samples, 0)
    copies = copies + torch.randn(copies.shape, generator=generator) * spread.cpu().repeat_interleave(samples, 0)
    grads = _chunked(model, copies, objective, rule, chunk_size)
    return grads.view(len(x), samples, *x.shape[1:]).mean(1)


def integrated_gradients(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, steps: int = 50,
                         baseline: torch.Tensor | float = 0.0, rule: str = "gradient",
                         chunk_size: int | None = None) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365), Gauss-Legendre quadrature.

    ``(x - baseline) * integral_0^1 grad f(baseline + a (x - baseline)) da``; the attributions
    sum to ``f(x) - f(baseline)`` (completeness) up to the quadrature error.

    Returns:
        ``(B, C, H, W)`` attributions.
    """
    model = as_model(model)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor((nodes + 1) / 2, dtype=x.dtype)
    weights = torch.tensor(weights / 2, dtype=x.dtype)
    x = x.detach().cpu()
    start = torch.as_tensor(baseline, dtype=x.dtype).expand_as(x)
    path = start[:, None] + alphas.view(1, -1, 1, 1, 1) * (x - start)[:, None]
    grads = _chunked(model, path.flatten(0, 1), objective, rule, chunk_size).view(path.shape)
    return (x - start).to(grads.device) * (grads * weights.view(1, -1, 1, 1, 1).to(grads.device)).sum(1)


def _chunked(model: Model, inputs: torch.Tensor, objective: Objective, rule: str,
             chunk_size: int | None) -> torch.Tensor:
    size = chunk_size or (GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK)
    return torch.cat([attribute(model, chunk, objective, rule=rule) for chunk in inputs.split(size)])
