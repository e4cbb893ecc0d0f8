"""SSIM against scikit-image's implementation."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from convscope.core.metrics import ssim


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_equals_skimage(seed):
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(40, 50, generator=generator)
    b = (a + 0.2 * torch.rand(40, 50, generator=generator)).clamp(0, 1)
    expected = structural_similarity(a.numpy().astype(np.float64), b.numpy().astype(np.float64), data_range=1.0,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    # both average the local SSIM over the positions where the whole 11x11 window fits
    assert ssim(a, b, data_range=1.0) == pytest.approx(expected, abs=2e-3)
    assert ssim(a, a, data_range=1.0) == pytest.approx(1.0)
