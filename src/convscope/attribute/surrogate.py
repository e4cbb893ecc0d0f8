"""Surrogate models on superpixels: KernelSHAP (Lundberg & Lee 2017) and LIME (Ribeiro et al. 2016).

Each image is cut into superpixels (SLIC); a coalition keeps some of them and fills the rest from
a blurred copy; the objective on many coalitions (batched, fast path, no gradient) is fit by a
weighted linear model in the coalition's on/off features, whose coefficients are the superpixels'
attributions. KernelSHAP weighs coalitions by the Shapley kernel and forces the coefficients to
sum to f(x) - f(blurred), so they are Shapley values (exactly, when every coalition fits in the
budget and all are enumerated); LIME weighs them by their closeness to the whole image.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

from convscope.core.forward import copy_scorer
from convscope.core.objectives import Objective
from convscope.core.smoothing import gaussian_blur
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model

#: Coalitions per forward pass (4 is fastest on a 2-core CPU for the default model).
CPU_CHUNK, GPU_CHUNK = 4, 256


def superpixels(image: torch.Tensor, count: int = 50) -> torch.Tensor:
    """``(H, W)`` SLIC labels ``0 .. n-1`` of an image ``(C, H, W)`` in [0, 1] (about ``count`` of them)."""
    from skimage.segmentation import slic

    array = image.detach().cpu().permute(1, 2, 0).double().numpy()
    labels = slic(array, n_segments=count, compactness=10, start_label=0, channel_axis=-1 if array.shape[-1] > 1
                  else None)
    return torch.from_numpy(np.unique(labels, return_inverse=True)[1].reshape(labels.shape))


def kernel_shap(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, segments: int = 50,
                samples: int = 1000, seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
    """KernelSHAP on superpixels: ``(B, H, W)``, each pixel its superpixel's Shapley value estimate.

    Args:
        segments: about how many superpixels (SLIC); ``labels`` ``(B, H, W)`` gives your own.
        samples: coalitions per image (paired: each drawn with its complement); all of them when
            ``2**M - 2`` fit.
    """
    return _surrogate(model, x, objective, segments, samples, seed, labels, shapley=True)


def lime(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, segments: int = 50,
         samples: int = 1000, width: float = 0.25, ridge: float = 1.0, seed: int = 0,
         labels: torch.Tensor | None = None) -> torch.Tensor:
    """LIME on superpixels: ``(B, H, W)``, each pixel its superpixel's coefficient in a ridge fit to
    random coalitions weighted by ``exp(-d^2 / width^2)`` (``d``: cosine distance to the whole image)."""
    return _surrogate(model, x, objective, segments, samples, seed, labels, shapley=False, width=width, ridge=ridge)


def _surrogate(model, x, objective, segments, samples, seed, labels, *, shapley, width=0.25, ridge=1.0):
    if samples < 2 or segments < 2:
        raise ConvscopeError(f"a surrogate needs samples >= 2 and segments >= 2; got {samples} and {segments}")
    model = as_model(model)
    x = x.detach().to(model.device)
    fill = gaussian_blur(x, sigma=max(x.shape[-2:]) / 20)
    maps = []
    for i in range(len(x)):
        label = (labels[i] if labels is not None else superpixels(x[i], segments)).to(model.device)
        count = int(label.max()) + 1
        generator = np.random.default_rng(seed)
        coalitions, weights = (_shapley_coalitions(count, samples, generator) if shapley else
                               _lime_coalitions(count, samples, generator, width))
        values = _values(model, x[i], fill[i], label, coalitions, objective.example(i))
        whole, empty = values[0], values[1]
        fit = (_constrained_fit(coalitions[2:], values[2:] - empty, weights[2:], whole - empty) if shapley else
               _ridge_fit(coalitions, values, weights, ridge))
        maps.append(torch.as_tensor(fit, dtype=torch.float32, device=model.device)[label])
    return torch.stack(maps)


def _shapley_coalitions(count: int, samples: int, generator) -> tuple[np.ndarray, np.ndarray]:
    """The whole and the empty coalition, then every other one with its Shapley kernel weight when
    they fit in ``samples``; else paired draws with sizes in proportion to the kernel's mass."""
    whole, empty = np.ones((1, count)), np.zeros((1, count))
    if 2 ** count - 2 <= samples:
        rows = np.array([z for z in itertools.product((0, 1), repeat=count) if 0 < sum(z) < count], dtype=float)
        sizes = rows.sum(1).astype(int)
        weights = (count - 1) / (np.array([math.comb(count, k) for k in sizes]) * sizes * (count - sizes))
    else:
        sizes = np.arange(1, count)
        mass = (count - 1) / (sizes * (count - sizes))
        drawn = generator.choice(sizes, size=samples // 2, p=mass / mass.sum())
        rows = np.zeros((len(drawn), count))
        for row, size in zip(rows, drawn):
            row[generator.choice(count, size=size, replace=False)] = 1
        rows = np.concatenate([rows, 1 - rows])
        weights = np.ones(len(rows))
    return np.concatenate([whole, empty, rows]), np.concatenate([[0.0, 0.0], weights])


def _lime_coalitions(count: int, samples: int, generator, width: float) -> tuple[np.ndarray, np.ndarray]:
    """The whole image first, then random coalitions, weighted by closeness to the whole image."""
    rows = np.concatenate([np.ones((1, count)), (generator.random((samples - 1, count)) < 0.5).astype(float)])
    cosine = rows.sum(1) / (np.sqrt(rows.sum(1)) * math.sqrt(count) + 1e-12)
    return rows, np.exp(-((1 - cosine) ** 2) / width ** 2)


def _values(model: Model, image, fill, label, coalitions: np.ndarray, objective: Objective) -> np.ndarray:
    """The objective on each coalition's image: kept superpixels from ``image``, the rest from ``fill``."""
    size = GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK
    keep = torch.as_tensor(coalitions, dtype=image.dtype, device=image.device)
    values = []
    with copy_scorer(model, objective, image[None]) as scored:
        for rows in keep.split(size):
            masks = rows[:, label][:, None]                                           # (k, 1, H, W)
            values.append(scored(masks * image + (1 - masks) * fill).double().cpu())
    return torch.cat(values).numpy()


def _constrained_fit(rows: np.ndarray, targets: np.ndarray, weights: np.ndarray, total: float) -> np.ndarray:
    """Weighted least squares of ``targets`` on ``rows`` with coefficients summing to ``total``
    (the last one eliminated)."""
    reduced = rows[:, :-1] - rows[:, -1:]
    shifted = targets - rows[:, -1] * total
    root = np.sqrt(weights)[:, None]
    head = np.linalg.lstsq(reduced * root, shifted * root[:, 0], rcond=None)[0]
    return np.append(head, total - head.sum())


def _ridge_fit(rows: np.ndarray, targets: np.ndarray, weights: np.ndarray, ridge: float) -> np.ndarray:
    """Weighted ridge regression with an unpenalized intercept; the coefficients without it."""
    design = np.concatenate([np.ones((len(rows), 1)), rows], 1)
    penalty = ridge * np.eye(design.shape[1])
    penalty[0, 0] = 0
    gram = design.T @ (design * weights[:, None]) + penalty
    return np.linalg.solve(gram, design.T @ (targets * weights))[1:]
