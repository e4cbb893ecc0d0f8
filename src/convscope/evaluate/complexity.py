"""How concentrated a map is: sparseness, the Gini index of its absolute values (Chalasani et al.
2020, arXiv:1810.06583). 1 when one pixel holds everything, 0 when all are equal; higher is better
(a concise explanation), though not alone: an empty map of one pixel is sparse and says nothing."""

from __future__ import annotations

import torch


def sparseness(maps: torch.Tensor) -> torch.Tensor:
    """``(B,)`` Gini index of each map ``(B, ...)``'s absolute values."""
    values = maps.detach().cpu().double().flatten(1).abs().sort(dim=1).values
    count = values.shape[1]
    ranks = torch.arange(1, count + 1, dtype=values.dtype)
    total = values.sum(1)
    gini = ((2 * ranks - count - 1) * values).sum(1) / (count * total.clamp_min(1e-300))
    return torch.where(total > 0, gini, torch.zeros_like(gini)).float()
