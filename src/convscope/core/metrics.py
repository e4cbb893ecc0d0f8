"""Image comparison and rank statistics used to report how close two maps or images are."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float | None = None, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), as skimage
    computes it with ``gaussian_weights=True, use_sample_covariance=False``.

    Args:
        a, b: ``(H, W)`` or ``(C, H, W)`` images of equal shape; channels are averaged.
        data_range: value range; the range of ``a`` and ``b`` together when omitted.

    Returns:
        Mean SSIM in [-1, 1]; 1 for identical images.
    """
    a, b = a.double(), b.double()
    if a.dim() == 2:
        a, b = a[None], b[None]
    if data_range is None:
        data_range = float(torch.maximum(a.max(), b.max()) - torch.minimum(a.min(), b.min())) or 1.0
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    radius = max(0, min(5, (min(a.shape[-2:]) - 1) // 2))  # 11x11, smaller only for tiny images
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = (kernel / kernel.sum())
    window = (kernel[:, None] * kernel[None, :]).expand(a.shape[0], 1, -1, -1)

    def blur(t):
        return F.conv2d(t[None], window, groups=a.shape[0])[0]
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(value.mean())


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (flattened), ties given their average rank."""
    return _pearson(_ranks(a.flatten().double()), _ranks(b.flatten().double()))


def _ranks(values: torch.Tensor) -> torch.Tensor:
    order = values.argsort()
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(len(values), dtype=values.dtype)
    unique, inverse = values.unique(return_inverse=True)
    sums = torch.zeros(len(unique), dtype=values.dtype).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(unique), dtype=values.dtype).index_add_(0, inverse, torch.ones_like(ranks))
    return (sums / counts)[inverse]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = (a.norm() * b.norm()).item()
    return float((a * b).sum() / denominator) if denominator else 0.0
