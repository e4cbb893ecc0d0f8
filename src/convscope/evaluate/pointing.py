"""Localization against a ground truth the user gives (a mask or a box per image).

* Pointing game (Zhang et al. 2016, arXiv:1608.00507): a hit when the map's maximum lies on the
  object, within a tolerance of 15 pixels; the score is the share of hits. Ties: a hit when any
  pixel of the maximum does.
* Energy-based pointing game (Wang et al. 2020, arXiv:1910.01279): the share of the map's
  positive mass that falls on the object; 1 when all of it does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convscope.errors import ConvscopeError


def pointing_game(maps: torch.Tensor, truth: torch.Tensor, *, tolerance: int = 15) -> torch.Tensor:
    """``(B,)`` 1.0 where the maximum of ``maps`` ``(B, H, W)`` lies within ``tolerance`` pixels
    (Chebyshev distance) of ``truth`` ``(B, H, W)`` (nonzero: the object), else 0.0."""
    truth = _checked(maps, truth)
    near = F.max_pool2d(truth[:, None].float(), 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0] > 0 \
        if tolerance > 0 else truth
    flat = maps.detach().cpu().float().flatten(1)
    peaks = flat == flat.amax(1, keepdim=True)
    return (peaks & near.flatten(1)).any(1).float()


def energy_pointing_game(maps: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``(B,)`` the share of each map's positive values ``(B, H, W)`` inside ``truth`` ``(B, H, W)``;
    0 for a map with nothing positive."""
    truth = _checked(maps, truth)
    positive = maps.detach().cpu().double().clamp_min(0).flatten(1)
    inside = (positive * truth.flatten(1)).sum(1)
    return (inside / positive.sum(1).clamp_min(1e-300)).float()


def box_masks(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W)`` bool: the pixels whose centers lie in each box ``(B, 4)`` ``x1, y1, x2, y2``."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).view(-1, 4)
    ys = torch.arange(size[0], dtype=torch.float32).view(1, -1, 1) + 0.5
    xs = torch.arange(size[1], dtype=torch.float32).view(1, 1, -1) + 0.5
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)


def _checked(maps: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    if truth.shape != maps.shape:
        raise ConvscopeError(f"the ground truth must be one mask per image at the maps' size, "
                             f"{tuple(maps.shape)}; got {tuple(truth.shape)}")
    truth = truth.detach().cpu() != 0
    empty = [i for i, mask in enumerate(truth) if not mask.any()]
    if empty:
        raise ConvscopeError(f"the ground truth of image {empty[0]} is empty; give the object's pixels or box")
    return truth
