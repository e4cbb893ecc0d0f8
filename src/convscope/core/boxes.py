"""Boxes ``(..., 4)`` as ``x1, y1, x2, y2`` in pixels: overlap and non-maximum suppression in
plain torch (no compiled operators needed), differentiable where they compute a value."""

from __future__ import annotations

import torch


def from_center(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` center x, center y, width, height -> ``x1, y1, x2, y2``."""
    center, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([center - size / 2, center + size / 2], -1)


def area(boxes: torch.Tensor) -> torch.Tensor:
    """``(...)`` areas of ``(..., 4)`` boxes (0 for an empty box)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def iou(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Intersection over union of ``(..., 4)`` boxes that broadcast against each other."""
    top_left = torch.maximum(first[..., :2], second[..., :2])
    bottom_right = torch.minimum(first[..., 2:], second[..., 2:])
    inter = (bottom_right - top_left).clamp_min(0).prod(-1)
    return inter / (area(first) + area(second) - inter).clamp_min(1e-12)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of the boxes ``(N, 4)`` kept by greedy non-maximum suppression, best score first:
    a box is dropped when it overlaps a better kept one by more than ``threshold`` (IoU)."""
    order = scores.argsort(descending=True)
    overlaps = iou(boxes[order, None], boxes[None, order])  # (N, N) in score order
    kept = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    for i in range(len(order)):
        if kept[i]:
            kept[i + 1:] &= overlaps[i, i + 1:] <= threshold
    return order[kept]
