"""ROAD: RemOve And Debias (Rong et al. 2022, arXiv:2202.00449).

Removed pixels are not painted black, which creates shapes the model reacts to whatever the map
said; each is filled with the mean of its 8 neighbours (edge neighbours weigh 1/6, corner ones 1/12),
solved jointly for all removed pixels as one sparse linear system, plus a little noise. The class
score is read with the most important pixels removed (MoRF: lower is better) and with the least
important removed (LeRF: higher is better), at each fraction. The score is a class's or a task
target's (:mod:`convscope.evaluate.scores`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve

from convscope.core.objectives import Objective
from convscope.evaluate.curves import Curve, order_ranks
from convscope.evaluate.scores import Target, check_target, copy_scores
from convscope.models.model import Model

#: Neighbour offsets ``(dy, dx)`` and their weights in the imputation.
NEIGHBOURS = (((-1, -1), 1 / 12), ((-1, 0), 1 / 6), ((-1, 1), 1 / 12), ((0, -1), 1 / 6),
              ((0, 1), 1 / 6), ((1, -1), 1 / 12), ((1, 0), 1 / 6), ((1, 1), 1 / 12))
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def impute(image: torch.Tensor, removed: torch.Tensor, *, noise: float = 0.01,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Noisy linear imputation: each removed pixel becomes the weighted mean of its in-image
    neighbours, removed ones included (one sparse solve for all channels), plus Gaussian noise.

    Args:
        image: ``(C, H, W)``.
        removed: ``(H, W)`` bool, the pixels to replace.
        noise: the noise's standard deviation.

    Returns:
        ``(C, H, W)`` a new image; kept pixels are unchanged.
    """
    height, width = removed.shape
    unknown = removed.flatten().numpy()
    index = np.full(height * width, -1)
    index[unknown] = np.arange(int(unknown.sum()))
    ys, xs = np.divmod(np.flatnonzero(unknown), width)
    values = image.detach().cpu().double().flatten(1).numpy()              # (C, H*W)
    rows, cols, entries = [np.arange(len(ys))], [np.arange(len(ys))], []
    diagonal = np.zeros(len(ys))
    right = np.zeros((len(ys), values.shape[0]))
    for (dy, dx), weight in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        diagonal[inside] += weight
        neighbour = (ny * width + nx)[inside]
        variable = index[neighbour]
        free = variable >= 0
        rows.append(np.flatnonzero(inside)[free])
        cols.append(variable[free])
        entries.append(np.full(int(free.sum()), -weight))
        right[np.flatnonzero(inside)[~free]] += weight * values[:, neighbour[~free]].T
    matrix = csc_matrix((np.concatenate([diagonal, *entries]), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(len(ys), len(ys)))
    solved = spsolve(matrix, right).reshape(len(ys), -1)
    out = image.detach().cpu().clone().flatten(1)
    filled = torch.from_numpy(solved.T).to(out.dtype)
    out[:, torch.from_numpy(unknown)] = filled + noise * torch.randn(filled.shape, generator=generator)
    return out.view_as(image)


def road(model: Model, x: torch.Tensor, maps: torch.Tensor, target: Target, *,
         fractions: tuple[float, ...] = FRACTIONS, most_relevant_first: bool = True, noise: float = 0.01,
         seed: int = 0, kind: str = "probability") -> Curve:
    """The ROAD curve: the target's score after imputing each fraction of the pixels, most relevant
    first (MoRF) or least relevant first (LeRF).

    Args:
        x: ``(B, C, H, W)`` images in [0, 1]; maps ``(B, H, W)``; target ``(B,)`` classes or an
            objective of the output.
        kind: for classes, ``probability``, ``logit`` or ``correct`` (the paper's accuracy).

    Returns:
        :class:`Curve` over ``fractions``.
    """
    check_target(target, len(x), kind)
    generator = torch.Generator().manual_seed(seed)
    ranks = order_ranks(maps.detach().cpu() if most_relevant_first else -maps.detach().cpu())
    pixels = ranks.shape[1]
    images = torch.stack([torch.stack([impute(image, (rank < round(f * pixels)).view(maps.shape[1:]), noise=noise,
                                              generator=generator) for f in fractions])
                          for image, rank in zip(x.cpu(), ranks)])                      # (B, F, C, H, W)
    scores = copy_scores(model, images, target if isinstance(target, Objective) else target.cpu(), kind=kind)
    return Curve(torch.tensor(fractions), scores)
