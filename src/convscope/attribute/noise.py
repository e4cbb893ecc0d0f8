"""Maps averaged over noisy copies of the input: the noise tunnel (SmoothGrad, SmoothGrad², VarGrad)
around any attribution method, and GradientSHAP (expected gradients from a baseline distribution).

Copies are made per chunk of samples, image-major (``k`` copies of image 0, then of image 1, ...),
which per-example objectives read correctly (:func:`convscope.core.objectives.class_logit`), so one
call explains a batch with one class per image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from convscope.attribute.core import attribute
from convscope.core.objectives import Objective
from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.model import Model, as_model

#: How the noisy copies' maps ``(B, samples, ...)`` become one map (Smilkov et al. 2017; Adebayo et al. 2018).
AGGREGATES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "smoothgrad": lambda maps: maps.mean(1),
    "smoothgrad-sq": lambda maps: maps.pow(2).mean(1),
    "vargrad": lambda maps: maps.var(1, unbiased=False),
}
#: Copies per backward pass: measured fastest on a 2-core CPU for the default model; GPUs take more.
CPU_CHUNK, GPU_CHUNK = 4, 128


def noise_tunnel(explain: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, kind: str = "smoothgrad",
                 samples: int = 25, noise: float = 0.15, seed: int = 0, chunk_size: int = CPU_CHUNK,
                 callback: Callable[[float], None] | None = None) -> torch.Tensor:
    """A map averaged over noisy copies of each image (NoiseTunnel).

    Args:
        explain: ``(N, C, H, W)`` copies, image-major -> ``(N, ...)`` maps of any method.
        x: ``(B, C, H, W)`` images in [0, 1].
        kind: one of :data:`AGGREGATES`: the mean (SmoothGrad), the mean square (SmoothGrad²) or
            the variance (VarGrad) of the copies' maps.
        samples: noisy copies per image.
        noise: Gaussian noise's standard deviation, as a fraction of each image's value range.
        chunk_size: copies per call of ``explain`` (at least one copy of every image).
        callback: called after each call of ``explain`` with the fraction of copies done.

    Returns:
        ``(B, ...)``, the shape of ``explain``'s maps.
    """
    if kind not in AGGREGATES:
        raise unknown_choice("noise tunnel", kind, AGGREGATES)
    if samples < 1:
        raise ConvscopeError(f"samples must be at least 1, not {samples}")
    generator = torch.Generator().manual_seed(seed)
    images = x.detach().cpu()
    spread = noise * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))
    noisy = images[:, None] + torch.randn((len(x), samples, *x.shape[1:]), generator=generator) * spread.view(
        -1, 1, 1, 1, 1)
    per_call = max(1, chunk_size // len(x))
    maps = []
    for start in range(0, samples, per_call):
        copies = noisy[:, start:start + per_call]
        explained = explain(copies.flatten(0, 1).to(x.device)).detach().cpu()
        maps.append(explained.view(*copies.shape[:2], *explained.shape[1:]))
        if callback:
            callback(min(samples, start + per_call) / samples)
    return AGGREGATES[kind](torch.cat(maps, 1)).to(x.device)


def smooth_grad(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, kind: str = "smoothgrad",
                samples: int = 25, noise: float = 0.15, rule: str = "gradient", seed: int = 0,
                chunk_size: int | None = None, callback: Callable[[float], None] | None = None) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825), SmoothGrad² or VarGrad of the gradient
    (or of deconvnet/guided backpropagation with ``rule``): ``(B, C, H, W)``."""
    model = as_model(model)
    return noise_tunnel(lambda copies: attribute(model, copies, objective, rule=rule), x, kind=kind,
                        samples=samples, noise=noise, seed=seed, chunk_size=chunk_size or _chunk(model),
                        callback=callback)


def gradient_shap(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, baselines: torch.Tensor | None = None,
                  samples: int = 25, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """GradientSHAP / expected gradients (Lundberg & Lee 2017; Erion et al. 2021).

    ``E[(x - b) * grad f(b + a (x - b) + n)]`` over baselines ``b`` drawn from ``baselines``, ``a``
    uniform in [0, 1] and Gaussian noise ``n``; in expectation it sums to ``f(x) - E f(b)``.

    Args:
        baselines: ``(N, C, H, W)`` reference images in [0, 1] (default: black and white, and
            uniform noise images).
        noise: the noise's standard deviation in pixel units.

    Returns:
        ``(B, C, H, W)`` attributions.
    """
    model = as_model(model)
    generator = torch.Generator().manual_seed(seed)
    if baselines is None:
        baselines = torch.cat([torch.zeros(1, *x.shape[1:]), torch.ones(1, *x.shape[1:]),
                               torch.rand((6, *x.shape[1:]), generator=generator)])
    baselines, images = baselines.detach().cpu().float(), x.detach().cpu()
    if baselines.shape[1:] != images.shape[1:]:
        raise ConvscopeError(f"baselines must be shaped like the images, (N, {', '.join(map(str, x.shape[1:]))}); "
                             f"got {tuple(baselines.shape)}")
    chosen = baselines[torch.randint(len(baselines), (len(x), samples), generator=generator)]   # (B, S, C, H, W)
    alphas = torch.rand((len(x), samples, 1, 1, 1), generator=generator)
    points = chosen + alphas * (images[:, None] - chosen)
    points = points + noise * torch.randn(points.shape, generator=generator)
    per_call = max(1, _chunk(model) // len(x))
    grads = torch.cat([attribute(model, points[:, start:start + per_call].flatten(0, 1).to(x.device), objective)
                       .view(len(x), -1, *x.shape[1:]).cpu() for start in range(0, samples, per_call)], 1)
    return ((images[:, None] - chosen) * grads).mean(1).to(x.device)


def _chunk(model: Model) -> int:
    return GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK
