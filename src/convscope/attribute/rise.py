"""RISE: Randomized Input Sampling for Explanation (Petsiuk et al. 2018, arXiv:1806.07421).

The image is shown through many random smooth masks; each pixel's importance is the objective's
average over the masks that kept it, ``sum_i f(x * M_i) M_i / (N p)``, here taken relative to the
objective's mean over all masks (``f_i - mean f``), so that the map is positive where showing the
pixel raises the score and negative where it lowers it, without the constant the raw sum carries. Masks are coarse random
grids (each cell kept with probability ``p``), upsampled bilinearly and shifted by a random
fraction of a cell; they are made chunk by chunk from one seeded draw, and every image's copies
go through the network together, batch norms folded, without gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.forward import copy_scorer
from convscope.core.objectives import Objective
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model

#: Masked copies per forward pass (all images' copies together).
CPU_CHUNK, GPU_CHUNK = 4, 256


def rise_masks(count: int, size: tuple[int, int], *, cells: int = 7, keep: float = 0.5, seed: int = 0,
               start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Masks ``start:stop`` of the ``count`` masks drawn with ``seed``: ``(n, 1, H, W)`` in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    grids = (torch.rand((count, 1, cells, cells), generator=generator) < keep).float()
    cell_h, cell_w = math.ceil(size[0] / cells), math.ceil(size[1] / cells)
    shifts = torch.stack([torch.randint(cell_h, (count,), generator=generator),
                          torch.randint(cell_w, (count,), generator=generator)], 1)
    stop = count if stop is None else stop
    big = F.interpolate(grids[start:stop], size=((cells + 1) * cell_h, (cells + 1) * cell_w), mode="bilinear",
                        align_corners=False)
    return torch.stack([big[i, :, dy:dy + size[0], dx:dx + size[1]]
                        for i, (dy, dx) in enumerate(shifts[start:stop].tolist())])


def rise(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, masks: int = 2000, cells: int = 7,
         keep: float = 0.5, seed: int = 0, chunk_size: int | None = None,
         callback: Callable[[float], None] | None = None) -> torch.Tensor:
    """RISE saliency of ``objective`` (e.g. a class logit) for each image.

    Args:
        x: ``(B, C, H, W)`` images in [0, 1].
        masks: how many random masks (the paper used 4000 at 224 px; fewer give a noisier map).
        cells: the masks' grid is ``cells x cells`` before upsampling.
        keep: the probability that a cell shows the image.
        callback: called after each chunk of masks with the fraction done.

    Returns:
        ``(B, H, W)``: ``sum_i (f_i - mean f) M_i / (N keep)``.
    """
    if masks < 1 or not 0 < keep <= 1 or cells < 1:
        raise ConvscopeError(f"RISE needs masks >= 1, 0 < keep <= 1 and cells >= 1; got {masks}, {keep}, {cells}")
    model = as_model(model)
    x = x.detach().to(model.device)
    size = tuple(x.shape[-2:])
    per_call = max(1, (chunk_size or (GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK)) // len(x))
    total = torch.zeros(len(x), *size, device=model.device)
    shown = torch.zeros(*size, device=model.device)
    scores = torch.zeros(len(x), device=model.device)
    with copy_scorer(model, objective, x) as scored:
        for start in range(0, masks, per_call):
            chunk = rise_masks(masks, size, cells=cells, keep=keep, seed=seed, start=start,
                               stop=min(masks, start + per_call)).to(model.device)             # (k, 1, H, W)
            copies = (x[:, None] * chunk[None]).flatten(0, 1)                                    # image-major
            values = scored(copies).view(len(x), -1)
            total += torch.einsum("bk,khw->bhw", values.float(), chunk[:, 0])
            shown += chunk[:, 0].sum(0)
            scores += values.float().sum(1)
            if callback:
                callback(min(masks, start + per_call) / masks)
    return (total - (scores / masks)[:, None, None] * shown) / (masks * keep)
